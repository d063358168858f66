"""Kafka with a login: the job and streamad's own clients against the stack's SASL listeners,
which take a SASL login (PLAIN or SCRAM) and nothing else (one over TLS, with a certificate of
the stack's own CA), with the password read from a file."""

from __future__ import annotations

import json
import os

import pytest

from streamad import cli, jobs_client
from streamad.replay import encoded, ordered_events
from streamad.stack import flink, kafka, kafka_address, process

from .conftest import write_config
from .helpers import (BAD_EVENTS, assert_alerts_match, expected_alerts, expected_windows,
                      feed_and_wait_for_scores, read_json_topic, wait_for)


def _listener(plain, protocol: str, tmp_path, **kafka_settings):
    """`plain` (the local stack's plain listener) connecting with `protocol` to the stack's
    login listener of that protocol as its user, and the path of that configuration."""
    host, port = kafka.login_listeners(*kafka_address(plain))[protocol]
    return write_config(plain, tmp_path / f"{protocol}.yaml", kafka={
        "bootstrap_servers": f"{host}:{port}", "security_protocol": protocol,
        "sasl_username": kafka.SASL_USER, "sasl_password_file": str(kafka.sasl_password_file()),
        **kafka_settings})


def _connects(config, topic: str) -> bool:
    """Whether streamad's client settings of `config` read `topic`'s offsets, giving up
    after 5 s (kafka-python waits 30 s by default: a refused login looks like a broker that
    does not answer)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaTimeoutError
    try:
        consumer = KafkaConsumer(**config.kafka.client_settings(), bootstrap_timeout_ms=5000)
    except KafkaTimeoutError:
        return False
    try:
        return consumer.end_offsets([TopicPartition(topic, 0)]) == {TopicPartition(topic, 0): 0}
    except KafkaTimeoutError:
        return False
    finally:
        consumer.close()


@pytest.fixture
def sasl_ssl(isolated, tmp_path):
    """`isolated`'s configuration; the same connecting over TLS to the stack's SASL_SSL
    listener as its user (SCRAM-SHA-512), trusting the stack's CA; and that one's file."""
    if os.environ.get("STREAMAD_TEST_EXTERNAL") == "1":
        pytest.skip("the SASL listeners, their password and CA are the local stack's; against "
                    "external servers, run the other tests")
    plain, _ = isolated
    for host, port in kafka.login_listeners(*kafka_address(plain)).values():
        if not process.port_open(host, port):
            pytest.fail(f"the Kafka at {plain.kafka.bootstrap_servers} has no listener at "
                        f"port {port}: it was started before the stack had its login "
                        f"listeners. Run 'bin/streamad stack down', then the tests again.")
    login, login_path = _listener(plain, "SASL_SSL", tmp_path, sasl_mechanism="SCRAM-SHA-512",
                                  ssl_ca_file=str(kafka.tls_ca_file()))
    return plain, login, login_path


def test_the_job_logs_in_to_kafka_over_tls_and_the_password_stays_out_of_flink(
        sasl_ssl, smd_slices, idle_cluster, tmp_path, capsys):
    plain, config, config_path = sasl_ssl
    password = kafka.sasl_password_file().read_text()
    topic = config.kafka.events_topic
    # The listeners take only a login, and over TLS only from a client that trusts the CA.
    wrong_password = tmp_path / "wrong-password"
    wrong_password.write_text("not-" + password)
    wrong, wrong_path = write_config(config, tmp_path / "wrong.yaml",
                                     kafka={"sasl_password_file": str(wrong_password)})
    untrusting, _ = write_config(config, tmp_path / "untrusting.yaml",
                                 kafka={"ssl_ca_file": None})
    sasl_plaintext, _ = _listener(plain, "SASL_PLAINTEXT", tmp_path, sasl_mechanism="PLAIN")
    without_login, _ = write_config(sasl_plaintext, tmp_path / "plain.yaml",
                                    kafka={"security_protocol": "PLAINTEXT"})
    for refused in (wrong, untrusting, without_login):
        assert not _connects(refused, topic), refused.kafka
    # The other mechanisms log in too.
    scram_256, _ = write_config(sasl_plaintext, tmp_path / "scram-256.yaml",
                                kafka={"sasl_mechanism": "SCRAM-SHA-256"})
    for other in (config, sasl_plaintext, scram_256):
        assert _connects(other, topic), other.kafka
    capsys.readouterr()
    assert cli.main(["--config", str(wrong_path), "alerts"]) == 1
    error = capsys.readouterr().err
    assert "a wrong user or password gives this too" in error and "Traceback" not in error
    assert "not-" + password not in error

    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    expected = expected_windows(config, events)
    want = expected_alerts(config, expected)
    assert want, "the slices should open incidents"

    job_id = jobs_client.submit(config, config_path)
    try:
        # The source reads, and both transactional sinks write, through the login.
        feed_and_wait_for_scores(config, messages, expected)
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
