"""The command line: help for every command, clear errors, exit codes."""

import json
import socket
import subprocess
import sys

import pytest

from models.artifact import FORMAT_VERSION
from streamad import jobs_client
from streamad.cli import build_parser, main
from streamad.config import load_config
from streamad.stack import flink

COMMANDS = ["stack", "train", "submit", "replay", "alerts", "demo"]


def test_every_command_is_listed_in_help(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "usage: streamad " + command in capsys.readouterr().out


def test_configuration_error_exits_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: {key_field: h, time_field: t, metric_fields: [x]}\n"
                   "window: {kind: sliding}\n")
    assert main(["--config", str(bad), "stack", "status"]) == 2
    assert "window.kind must be one of tumbling, hopping, got 'sliding'" in capsys.readouterr().err


def test_train_on_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path)]) == 2
    assert "no *_train.csv.gz files in" in capsys.readouterr().err


def unused_port() -> int:
    with socket.socket() as unused:  # nothing listens on it once this closes
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


def test_flink_not_answering_is_a_clear_error(monkeypatch, capsys):
    port = unused_port()
    monkeypatch.setenv("STREAMAD__FLINK__REST_URL", f"http://127.0.0.1:{port}")
    assert main(["submit"]) == 1
    error = capsys.readouterr().err
    assert (f"Flink's REST API did not answer GET http://127.0.0.1:{port}/jobs/overview"
            in error)
    assert "bin/streamad stack status" in error and "Traceback" not in error


def test_a_flink_home_without_flink_is_refused_before_the_running_job_is_stopped(
        monkeypatch, tmp_path, capsys):
    port = unused_port()  # had submit asked Flink to stop the job, this would say so
    monkeypatch.setenv("STREAMAD__FLINK__REST_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("STREAMAD__FLINK__HOME", str(tmp_path))
    assert main(["submit", "--replace"]) == 1
    error = capsys.readouterr().err
    assert f"flink.home is {tmp_path}, which has no bin/flink" in error
    assert "did not answer" not in error and "Traceback" not in error


def test_submit_runs_a_clusters_own_flink_with_its_configuration(monkeypatch, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "flink").write_text("#!/bin/sh\n")
    monkeypatch.setenv("FLINK_CONF_DIR", "/etc/cluster-flink")
    config = load_config(environ={"STREAMAD__FLINK__HOME": str(tmp_path),
                                  "STREAMAD__FLINK__SHIP_CONNECTOR": "false",
                                  "STREAMAD__FLINK__REST_URL": "http://jobmanager:8081"})
    argv, env = jobs_client.flink_run_command(config, None, bounded=False)
    assert argv[:5] == [str(tmp_path / "bin" / "flink"), "run", "-d", "-m", "jobmanager:8081"]
    assert "--connector-jar" not in argv  # the cluster's lib/ has it
    assert env["FLINK_CONF_DIR"] == "/etc/cluster-flink"
    # Without a home: the wheel's flink, with the local stack's configuration.
    local = load_config(environ={"STREAMAD__FLINK__SHIP_CONNECTOR": "false"})
    argv, env = jobs_client.flink_run_command(local, None, bounded=False)
    assert argv[0] == str(flink.flink_home() / "bin" / "flink")
    assert env["FLINK_CONF_DIR"] == str(flink.conf_dir())


def test_fresh_state_without_replace_is_refused_before_anything_is_asked_of_flink(capsys):
    assert main(["submit", "--fresh-state"]) == 1
    assert capsys.readouterr().err == (
        "error: --fresh-state goes with --replace: it cancels the running job instead of "
        "stopping it with a savepoint.\n")


def test_models_lists_the_current_and_pinned_models_and_prunes_only_knowing_the_jobs(
        tmp_path, monkeypatch, capsys):
    import numpy as np
    from models.artifact import pinned_artifact, save_artifact
    from models.scorers import IsolationForestScorer
    saved = []
    for seed in (0, 1):
        scorer = IsolationForestScorer(n_estimators=5, random_state=0).fit(
            np.random.default_rng(seed).normal(size=(50, 2)))
        saved.append(save_artifact(tmp_path / "m", scorer, {"model_kind": "iforest",
                                                            "feature_names": ["a", "b"],
                                                            "threshold": 0.5}))
        if seed == 0:  # a job was submitted with the first model
            pinned_artifact(tmp_path / "m", saved[0].metadata)
    monkeypatch.setenv("STREAMAD__MODEL__ARTIFACT_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("STREAMAD__FLINK__REST_URL", f"http://127.0.0.1:{unused_port()}")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("(the jobs that use each model are unknown: Flink's REST API "
                               "did not answer")
    assert lines[1:] == [f"{saved[0].model_version:24} -",
                         f"{saved[1].model_version:24} current (streamad train wrote it last)"]
    # Without knowing the jobs, nothing is pruned.
    assert main(["models", "--prune"]) == 1
    assert capsys.readouterr().err.startswith(
        "error: not pruning: which models the running jobs use is unknown. Flink's REST API "
        "did not answer")
    assert (tmp_path / "m" / "versions" / saved[0].model_version).is_dir()


def test_kafka_not_answering_is_a_clear_error(monkeypatch, capsys):
    port = unused_port()
    monkeypatch.setenv("STREAMAD__KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    assert main(["alerts"]) == 1  # after kafka-python's bootstrap timeout, about 30 s
    error = capsys.readouterr().err
    assert error.startswith(f"error: Kafka did not answer 127.0.0.1:{port} (")
    assert "bin/streamad stack status" in error and "Traceback" not in error


@pytest.mark.parametrize("argv, says", [
    (["replay", "--speedup", "-1"], "argument --speedup: expected a number above 0, got '-1'"),
    (["demo", "--limit-per-key", "0"],
     "argument --limit-per-key: expected a whole number above 0, got '0'"),
    (["alerts", "--idle-s", "soon"], "argument --idle-s: expected a number above 0, got 'soon'"),
])
def test_a_count_or_duration_must_be_positive(argv, says, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert says in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "streamad.cli", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "demo" in result.stdout


def test_demo_retrains_a_model_the_configuration_no_longer_describes(labeled_folder, tmp_path):
    import dataclasses

    from models.train import train
    from streamad.cli import why_train
    from streamad.config import load_config
    config = load_config()
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, artifact_dir=str(tmp_path / "model")))
    assert "no model in" in why_train(config, asked=False)
    train(config, [labeled_folder / "machine-2-7_train.csv"])
    assert why_train(config, asked=False) is None
    assert why_train(config, asked=True) == "--retrain"
    changed = dataclasses.replace(config, model=dataclasses.replace(
        config.model, threshold_method="quantile", cap=5.0))
    reason = why_train(changed, asked=False)
    assert "model.cap: 10.0 -> 5.0" in reason
    assert "model.threshold_method: median_multiple -> quantile" in reason
    wider = dataclasses.replace(config, window=dataclasses.replace(config.window, size_s=1200))
    assert why_train(wider, asked=False).endswith("window.size_s: 600 -> 1200")
    # A model written by an older streamad, whose fitted parts this one cannot read.
    metadata_path = tmp_path / "model" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "format_version": 1}))
    assert (f"artifact format 1, and this version of streamad reads format {FORMAT_VERSION}"
            in why_train(config, asked=False))
