"""Kafka with a login: the job and streamad's own clients against the stack's SASL listener,
which takes a SASL PLAIN login and nothing else, with the password read from a file."""

from __future__ import annotations

import json
import os

import pytest

from streamad import jobs_client
from streamad.alerts import end_offsets
from streamad.replay import encoded, ordered_events
from streamad.stack import flink, kafka, process

from .conftest import write_config
from .helpers import (BAD_EVENTS, assert_alerts_match, expected_alerts, expected_windows,
                      flush_all_partitions, influx_count, produce, read_json_topic, wait_for,
                      wait_for_count)


@pytest.fixture
def sasl(isolated, tmp_path):
    """`isolated`'s configuration, connecting to the stack's SASL listener as its user."""
    if os.environ.get("STREAMAD_TEST_EXTERNAL") == "1":
        pytest.skip("the SASL listener and its password are the local stack's; against "
                    "external servers, run the other tests")
    config, _ = isolated
    host, port = config.kafka.bootstrap_servers.rsplit(":", 1)
    return write_config(config, tmp_path / "sasl.yaml", kafka={
        "bootstrap_servers": f"{host}:{int(port) + kafka.SASL_PORT_OFFSET}",
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": kafka.SASL_USER,
        "sasl_password_file": str(kafka.sasl_password_file())})


def test_the_job_logs_in_to_kafka_and_the_password_stays_out_of_flink(
        sasl, smd_slices, idle_cluster, tmp_path):
    config, config_path = sasl
    password = kafka.sasl_password_file().read_text()
    # The listener takes only a login: without one, or with a wrong password, nothing.
    without_login, _ = write_config(config, tmp_path / "plain.yaml",
                                    kafka={"security_protocol": "PLAINTEXT"})
    wrong_password = tmp_path / "wrong-password"
    wrong_password.write_text("not-" + password)
    wrong, _ = write_config(config, tmp_path / "wrong.yaml",
                            kafka={"sasl_password_file": str(wrong_password)})
    for refused in (without_login, wrong):
        with pytest.raises(Exception, match="Unable to bootstrap"):
            end_offsets(refused.kafka, config.kafka.events_topic)

    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    expected = expected_windows(config, events)
    want = expected_alerts(config, expected)
    assert want, "the slices should open incidents"

    job_id = jobs_client.submit(config, config_path)
    try:
        # The source reads, and both transactional sinks write, through the login.
        produce(config, messages + [(b"machine-1-6", bad) for bad in BAD_EVENTS])
        flush_all_partitions(config)
        wait_for_count(lambda: influx_count(config), len(expected), stalled_s=180,
                       timeout_s=600, what="window scores in InfluxDB")
        wait_for(lambda: len(read_json_topic(config, config.kafka.alerts_topic, 3))
                 >= len(want), 120, f"{len(want)} committed alerts")
        assert_alerts_match(read_json_topic(config, config.kafka.alerts_topic), want)
        dead = read_json_topic(config, config.kafka.dead_letter_topic)
        assert len(dead) == len(BAD_EVENTS)

        # Flink shows the job's SQL (the plan) and its configuration: neither holds the
        # password, only where it is; nor do the Flink processes' logs.
        shown = json.dumps([flink.rest(config.flink.rest_url, f"/jobs/{job_id}{part}")
                            for part in ("", "/plan", "/config")])
        assert password not in shown
        for log in (process.logs_dir() / "flink").glob("*"):
            if log.is_file():
                assert password not in log.read_text(errors="replace"), log
    finally:
        jobs_client.cancel_running(config)
