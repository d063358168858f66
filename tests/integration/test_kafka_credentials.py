"""Kafka with a login: the job and streamad's own clients against the stack's login
listeners: two take a SASL login (PLAIN or SCRAM) and nothing else (one over TLS, with a
certificate of the stack's own CA), with the password read from a file; one takes a client
certificate that CA signed (mutual TLS), with the key read from a file."""

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
    login listener of that protocol (a SASL one as its user), and the path of that
    configuration."""
    host, port = kafka.login_listeners(*kafka_address(plain))[protocol]
    sasl_login = ({"sasl_username": kafka.SASL_USER,
                   "sasl_password_file": str(kafka.sasl_password_file())}
                  if protocol.startswith("SASL_") else {})
    return write_config(plain, tmp_path / f"{protocol}.yaml", kafka={
        "bootstrap_servers": f"{host}:{port}", "security_protocol": protocol, **sasl_login,
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
def login_listeners(isolated):
    """`isolated`'s configuration, once the stack's broker is seen to have its login
    listeners."""
    if os.environ.get("STREAMAD_TEST_EXTERNAL") == "1":
        pytest.skip("the login listeners, their password, CA and client certificate are the "
                    "local stack's; against external servers, run the other tests")
    plain, _ = isolated
    for host, port in kafka.login_listeners(*kafka_address(plain)).values():
        if not process.port_open(host, port):
            pytest.fail(f"the Kafka at {plain.kafka.bootstrap_servers} has no listener at "
                        f"port {port}: it was started before the stack had its login "
                        f"listeners. Run 'bin/streamad stack down', then the tests again.")
    return plain


@pytest.fixture
def sasl_ssl(login_listeners, tmp_path):
    """The plain configuration; the same connecting over TLS to the stack's SASL_SSL
    listener as its user (SCRAM-SHA-512), trusting the stack's CA; and that one's file."""
    plain = login_listeners
    login, login_path = _listener(plain, "SASL_SSL", tmp_path, sasl_mechanism="SCRAM-SHA-512",
                                  ssl_ca_file=str(kafka.tls_ca_file()))
    return plain, login, login_path


@pytest.fixture
def mutual_tls(login_listeners, tmp_path):
    """The plain configuration; the same connecting to the stack's SSL listener with the
    stack's client certificate, trusting its CA; and that one's file."""
    plain = login_listeners
    certificate, key = kafka.tls_client_files()
    login, login_path = _listener(plain, "SSL", tmp_path, ssl_ca_file=str(kafka.tls_ca_file()),
                                  ssl_certificate_file=str(certificate), ssl_key_file=str(key))
    return plain, login, login_path


def _run_job_through(config, config_path, smd_slices, secret: str) -> None:
    """Run the job with `config` on the standalone cluster: its source reads, and both
    transactional sinks write, through `config`'s connection; and `secret` is in none of the
    job's pages in Flink's REST API (its SQL, its plan, its configuration), nor in the Flink
    processes' logs."""
    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    expected = expected_windows(config, events)
    want = expected_alerts(config, expected)
    assert want, "the slices should open incidents"

    job_id = jobs_client.submit(config, config_path)
    try:
        feed_and_wait_for_scores(config, messages, expected)
        wait_for(lambda: len(read_json_topic(config, config.kafka.alerts_topic, 3))
                 >= len(want), 120, f"{len(want)} committed alerts")
        assert_alerts_match(read_json_topic(config, config.kafka.alerts_topic), want)
        dead = read_json_topic(config, config.kafka.dead_letter_topic)
        assert len(dead) == len(BAD_EVENTS)

        shown = json.dumps([flink.rest(config.flink.rest_url, f"/jobs/{job_id}{part}")
                            for part in ("", "/plan", "/config")])
        assert secret not in shown
        for log in (process.logs_dir() / "flink").glob("*"):
            if log.is_file():
                assert secret not in log.read_text(errors="replace"), log
    finally:
        jobs_client.cancel_running(config)


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

    # Kafka registers its SCRAM login JVM-wide, from the class loader of the first job that
    # logs in. Here that is a job with the wrong password, which ends; the job after it must
    # log in all the same (before the connector was on the cluster's classpath, it failed
    # with NoClassDefFoundError ...ScramMessages and its source retried in a tight loop).
    try:
        refused_job = jobs_client.submit(wrong, wrong_path)
        wait_for(lambda: flink.rest(config.flink.rest_url, f"/jobs/{refused_job}/exceptions")[
            "exceptionHistory"]["entries"], 60, "the refused login in the job's failures")
    except jobs_client.SubmitError as failed:  # its restarts ran out before it was seen running
        assert "is FAILED" in str(failed)
    finally:
        jobs_client.cancel_running(wrong)
    _run_job_through(config, config_path, smd_slices, password)


def _self_signed(folder, name: str) -> tuple[str, str]:
    """A certificate and key that no CA the broker trusts signed."""
    import subprocess
    certificate, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(certificate), "-days", "1", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return str(certificate), str(key)


def test_the_job_connects_with_a_client_certificate_and_its_key_stays_out_of_flink(
        mutual_tls, smd_slices, idle_cluster, tmp_path, capsys):
    _, config, config_path = mutual_tls
    certificate, key = kafka.tls_client_files()
    topic = config.kafka.events_topic
    # The SSL listener takes only a client with a certificate of the stack's CA.
    without_certificate, _ = write_config(config, tmp_path / "without.yaml", kafka={
        "ssl_certificate_file": None, "ssl_key_file": None})
    stranger_certificate, stranger_key = _self_signed(tmp_path, "stranger")
    stranger, stranger_path = write_config(config, tmp_path / "stranger.yaml", kafka={
        "ssl_certificate_file": stranger_certificate, "ssl_key_file": stranger_key})
    for refused in (without_certificate, stranger):
        assert not _connects(refused, topic), refused.kafka
    assert _connects(config, topic)
    capsys.readouterr()
    assert cli.main(["--config", str(stranger_path), "alerts"]) == 1
    error = capsys.readouterr().err
    assert "A client certificate the brokers do not accept gives this too" in error
    assert "Traceback" not in error
    # The key's body, without its PEM armour: what the job must never show.
    key_body = "".join(line for line in key.read_text().splitlines()[1:-1])[:64]
    _run_job_through(config, config_path, smd_slices, key_body)
