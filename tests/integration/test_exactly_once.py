"""Exactly-once through failures and upgrades: the TaskManager is killed with SIGKILL
mid-stream (after a retrain replaced the model), InfluxDB stops mid-stream, and the job is
replaced mid-stream.

The job runs on the standalone cluster. After the first half of the events and a completed
checkpoint, the TaskManager process is killed; the second half arrives while it is down; a
new TaskManager starts and the job recovers from its checkpoint. A read_committed consumer
must then see each expected alert exactly once, and InfluxDB must hold exactly one point per
(key, window), equal to the offline computation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import urllib.parse
from pathlib import Path

import pytest

from models.artifact import read_metadata
from streamad import cli, jobs_client
from streamad.alerts import group_lag
from streamad.replay import encoded, ordered_events
from streamad.stack import flink, process

from .conftest import write_config
from .helpers import (assert_alerts_match, assert_points_match, expected_alerts,
                      expected_windows, influx_count,
                      influx_points, produce, read_json_topic, wait_for,
                      wait_for_count, flush_all_partitions)


def _checkpoints_completed(config, job_id) -> int:
    return flink.rest(config.flink.rest_url, f"/jobs/{job_id}/checkpoints")["counts"]["completed"]


def _halves(config, smd_slices):
    """The test slices' events as messages, where their second half starts, and the window
    scores and alerts the offline computation gives for all of them."""
    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    expected = expected_windows(config, events)
    return messages, len(messages) // 2, expected, expected_alerts(config, expected)


def _assert_written_once(config, expected, want):
    """InfluxDB holds one point per expected window, equal to the offline one, and the alerts
    topic each expected alert once; returns the points."""
    points = influx_points(config)
    assert len(points) == len(expected)
    assert_points_match(points, expected, config.schema.key_field)
    assert_alerts_match(read_json_topic(config, config.kafka.alerts_topic), want)
    return points


def _wait_until_written(config, job_id, expected, want, settle: bool = True) -> None:
    """Until InfluxDB has a point for every expected window and the alerts topic as many
    committed alerts as expected; with `settle`, two more checkpoints, by which any
    duplicate a faulty sink would commit shows up."""
    wait_for_count(lambda: influx_count(config), len(expected), stalled_s=180,
                   timeout_s=900, what="window scores in InfluxDB")
    wait_for(lambda: len(read_json_topic(config, config.kafka.alerts_topic, 3))
             >= len(want), 120, f"{len(want)} committed alerts")
    if settle:
        settled = _checkpoints_completed(config, job_id)
        wait_for(lambda: _checkpoints_completed(config, job_id) >= settled + 2, 60,
                 "two more checkpoints")


def test_taskmanager_sigkill_mid_stream_keeps_alerts_and_points_exactly_once(
        isolated, smd_slices, idle_cluster, tmp_path, capsys):
    from models.train import train
    config, config_path = isolated
    # A model folder of this test's own, as the test retrains into it.
    shutil.copytree(config.artifact_path, tmp_path / "model")
    config, config_path = write_config(config, tmp_path / "own-model.yaml",
                                       model={"artifact_dir": str(tmp_path / "model")})
    messages, half, expected, want = _halves(config, smd_slices)
    assert want, "test data should open some incidents"

    job_id = jobs_client.submit(config, config_path)
    try:
        produce(config, messages[:half])
        wait_for(lambda: influx_count(config) > 0, 180, "the first window scores in InfluxDB")
        before = _checkpoints_completed(config, job_id)
        wait_for(lambda: _checkpoints_completed(config, job_id) > before, 60,
                 "a checkpoint after the first scores")
        written_before_crash = influx_count(config)
        # A retrain replaces the model while the job runs: the job, failover included, keeps
        # the model it was submitted with (its points must equal the first model's).
        submitted_version = read_metadata(config.artifact_path)["model_version"]
        retrained = train(config, smd_slices["train"][:1])
        assert retrained.model_version != submitted_version

        taskmanager = process.running_pid(flink.TASKMANAGER)
        assert taskmanager is not None, "the stack's TaskManager should run"
        # The whole TaskManager dies, its Python workers with it, as when its container does
        # (the JVM alone would leave them running, orphaned, after the test).
        os.killpg(taskmanager, signal.SIGKILL)
        produce(config, messages[half:])
        flink.start_taskmanager()

        flush_all_partitions(config)

        # After the restart the Python workers start again and the job replays from its
        # checkpoint: on a loaded machine that takes minutes, so wait while points arrive.
        _wait_until_written(config, job_id, expected, want)

        history = flink.rest(config.flink.rest_url, f"/jobs/{job_id}/exceptions")
        assert history["exceptionHistory"]["entries"], "the job should have failed over"
        assert flink.rest(config.flink.rest_url, f"/jobs/{job_id}")["state"] == "RUNNING"
        assert 0 < written_before_crash < len(expected), "the crash should be mid-stream"

        points = _assert_written_once(config, expected, want)
        assert set(points["model_version"]) == {submitted_version}

        # `streamad models --prune` keeps the copy the running job scores with, and the
        # current model; a copy nothing uses goes.
        versions = config.artifact_path / "versions"
        shutil.copytree(versions / submitted_version, versions / "pca-unused")
        capsys.readouterr()
        assert cli.main(["--config", str(config_path), "models", "--prune"]) == 0
        listed = capsys.readouterr().out
        assert f"{submitted_version:24} job {config.flink.job_name} (RUNNING)" in listed
        assert f"{retrained.model_version:24} current" in listed
        assert "removed 1 pinned copy" in listed and "pca-unused" in listed
        assert [p.name for p in versions.iterdir()] == [submitted_version]

        # A late event (older than the watermark) is dead-lettered, not silently dropped.
        late = messages[0][1]
        produce(config, [(messages[0][0], late)])
        letters = wait_for(lambda: read_json_topic(config, config.kafka.dead_letter_topic, 3),
                           60, "the late event in the dead-letter topic")
        assert [d["payload"] for d in letters] == [late.decode()]
        assert letters[0]["reason"].startswith("late: event time ")
    finally:
        jobs_client.cancel_running(config)


def test_influxdb_down_mid_stream_loses_no_window_score(isolated, smd_slices, idle_cluster):
    """InfluxDB stops (maintenance, a crash) while the job runs: the score sink retries, then
    fails the task, and Flink restarts the job from its checkpoint until InfluxDB is back.
    Every window's point must then be there once, equal to the offline computation, and
    every alert committed once."""
    from streamad.stack import influxdb
    config, config_path = isolated
    if process.running_pid(influxdb.NAME) is None:
        pytest.skip("InfluxDB is not the local stack's (STREAMAD_TEST_EXTERNAL): the test "
                    "stops and starts it")
    messages, half, expected, want = _halves(config, smd_slices)

    job_id = jobs_client.submit(config, config_path)
    try:
        # A second submit without replace must refuse, naming the job that runs.
        with pytest.raises(jobs_client.SubmitError, match=f"already runs.*{job_id}"):
            jobs_client.submit(config, config_path)
        produce(config, messages[:half])
        wait_for(lambda: influx_count(config) > 0, 180, "the first window scores in InfluxDB")
        written_before = influx_count(config)
        influxdb.stop()
        try:
            produce(config, messages[half:])
            flush_all_partitions(config)
            # The sink gives up after its retries and the job fails over, while InfluxDB is
            # down: that is the path under test.
            wait_for(lambda: flink.rest(config.flink.rest_url, f"/jobs/{job_id}/exceptions")
                     ["exceptionHistory"]["entries"], 240, "the job failing over")
        finally:
            influxdb.start(config.influxdb.url, config.influxdb.database)
        _wait_until_written(config, job_id, expected, want, settle=False)

        assert 0 < written_before < len(expected), "InfluxDB should stop mid-stream"
        history = flink.rest(config.flink.rest_url, f"/jobs/{job_id}/exceptions")
        causes = json.dumps(history["exceptionHistory"]["entries"])
        assert f"InfluxDB at {config.influxdb.url} could not be reached" in causes
        assert flink.rest(config.flink.rest_url, f"/jobs/{job_id}")["state"] == "RUNNING"
        _assert_written_once(config, expected, want)
    finally:
        jobs_client.cancel_running(config)


def test_replace_mid_stream_carries_the_state_over(isolated, smd_slices, idle_cluster, capsys):
    """`streamad submit --replace`, the way a retrained model is put to work, mid-stream: the
    running job stops with a savepoint and the new one starts from it. The windows open at
    the switch, each key's recent levels (72 windows of them), the alert policy's incidents
    and drift runs, and the read offsets carry over, so InfluxDB and the alerts topic hold
    what one uninterrupted run gives, each window and alert once. (Without the state the
    windows open at the switch would lose their earlier events, and the recent levels and
    incidents would start over.)"""
    config, config_path = isolated
    messages, half, expected, want = _halves(config, smd_slices)

    first = jobs_client.submit(config, config_path)
    try:
        produce(config, messages[:half])
        # Everything of the first half read and committed: a new job without the state would
        # read on from there, and the windows open at the switch would miss their start.
        wait_for(lambda: group_lag(config.kafka, config.kafka.events_topic,
                                   config.kafka.consumer_group) == 0, 300,
                 "the first half read and committed")
        # Submitted the way a cluster's own Flink submits (flink.home, docker/'s submit
        # service): the wheel's bin/flink with its own conf/, not the stack's rendered one.
        second = jobs_client.submit(dataclasses.replace(config, flink=dataclasses.replace(
            config.flink, home=str(flink.flink_home()))), config_path, replace=True)
        written_before = influx_count(config)
        assert second != first
        assert flink.rest(config.flink.rest_url, f"/jobs/{first}")["state"] == "FINISHED"
        restored = flink.rest(config.flink.rest_url,
                              f"/jobs/{second}/checkpoints")["latest"]["restored"]
        assert restored["is_savepoint"], restored
        savepoint = Path(urllib.parse.urlparse(restored["external_path"]).path)
        assert savepoint.parent == Path(config.flink.savepoint_dir), restored
        # The web UI and `stack status` show which model the job scores with.
        shown = flink.rest(config.flink.rest_url,
                           f"/jobs/{second}/config")["execution-config"]["user-config"]
        version = read_metadata(config.artifact_path)["model_version"]
        assert shown == {"streamad.model_version": version, "streamad.model_dir": str(
            config.artifact_path.resolve() / "versions" / version)}, shown
        capsys.readouterr()
        assert cli.main(["--config", str(config_path), "stack", "status"]) == 0
        assert re.search(rf"^job {config.flink.job_name} +RUNNING +model {version} .*{second}",
                         capsys.readouterr().out, re.MULTILINE)

        produce(config, messages[half:])
        flush_all_partitions(config)
        _wait_until_written(config, second, expected, want)

        assert 0 < written_before < len(expected), "the switch should be mid-stream"
        _assert_written_once(config, expected, want)
    finally:
        jobs_client.cancel_running(config)


def test_replace_that_fails_says_what_to_do(isolated, smd_slices, idle_cluster, tmp_path):
    """Two ways a replace fails. Flink cannot write the savepoint: the old job runs on, and
    the message says why. A retrain with another recent-level span changes the job's
    operators, so the new job cannot take the old one's state: the replace says so and how
    to go on (--fresh-state), the old job stays stopped with its savepoint kept, and a fresh
    start runs."""
    from models.train import train
    config, config_path = isolated
    shutil.copytree(config.artifact_path, tmp_path / "model")
    config, config_path = write_config(config, tmp_path / "own-model.yaml",
                                       model={"artifact_dir": str(tmp_path / "model")})
    first = jobs_client.submit(config, config_path)
    try:
        (tmp_path / "a-file").write_text("not a folder")
        unwritable, unwritable_path = write_config(
            config, tmp_path / "unwritable.yaml",
            flink={"savepoint_dir": str(tmp_path / "a-file" / "savepoints")})
        with pytest.raises(jobs_client.SubmitError,
                           match=rf"Flink could not stop job {first} with a savepoint in .*"
                                 rf"The job runs on; submit with --replace --fresh-state"):
            jobs_client.submit(unwritable, unwritable_path, replace=True)
        assert flink.rest(config.flink.rest_url, f"/jobs/{first}")["state"] == "RUNNING"

        other, other_path = write_config(config, tmp_path / "no-levels.yaml",
                                         model={"explain_recent_windows": 0})
        train(other, smd_slices["train"])
        with pytest.raises(jobs_client.SubmitError) as error:
            jobs_client.submit(other, other_path, replace=True)
        message = str(error.value)
        assert message.startswith("the new job cannot start from the state in file:"), message
        assert "No job of this name runs now" in message and "--fresh-state" in message
        assert "Traceback" not in message and "Py4J" not in message, message
        assert flink.rest(config.flink.rest_url, f"/jobs/{first}")["state"] == "FINISHED"
        assert list(Path(config.flink.savepoint_dir).glob("savepoint-*")), "savepoint kept"
        fresh = jobs_client.submit(other, other_path, replace=True, keep_state=False)
        assert flink.rest(config.flink.rest_url, f"/jobs/{fresh}")["state"] == "RUNNING"
    finally:
        jobs_client.cancel_running(config)
