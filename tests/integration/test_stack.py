"""The local stack: idempotent start, health, and the settings transactions need."""

import urllib.request

from streamad import stack
from streamad.stack import flink, influxdb, kafka, process


def test_stack_up_again_starts_nothing_and_everything_answers(stack_config):
    config = stack_config
    assert stack.up(config, progress=lambda message: None) == []
    overview = flink.rest(config.flink.rest_url, "/overview")
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == 2
    assert overview["flink-version"] == "2.2.1"
    with urllib.request.urlopen(f"{config.influxdb.url}/ping", timeout=5) as response:
        assert response.status == 204
    databases = influxdb.query(config.influxdb.url, "SHOW DATABASES",
                               token=config.influxdb.read_token())
    assert [config.influxdb.database] in databases["results"][0]["series"][0]["values"]


def test_broker_allows_the_sinks_transactions(stack_config):
    if process.running_pid(kafka.NAME) is None:
        return  # an external broker: its settings are its operator's
    properties = (process.state_dir() / "kafka" / "server.properties").read_text()
    assert f"transaction.max.timeout.ms={kafka.TRANSACTION_MAX_TIMEOUT_MS}" in properties
    assert kafka.TRANSACTION_MAX_TIMEOUT_MS >= stack_config.kafka.transaction_timeout_ms
    assert "transaction.state.log.replication.factor=1" in properties


def test_status_reports_our_servers(stack_config):
    entries = {entry.name: entry for entry in stack.status(stack_config)}
    assert set(entries) == {"kafka", "influxdb", "flink-jobmanager", "flink-taskmanager"}
    assert all(entry.running for entry in entries.values())
