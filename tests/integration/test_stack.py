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


def test_a_group_started_at_the_end_reads_only_what_comes_after(stack_config):
    # The demo starts its job's consumer group at the events topic's end, so that events an
    # interrupted run left unread are not read before the new run's replay.
    import uuid

    from kafka import KafkaConsumer, KafkaProducer

    from streamad.alerts import group_lag, start_group_at_end
    connection = stack_config.kafka
    bootstrap = connection.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    topic, group = f"t-{run}-start-at-end", f"t-{run}"
    kafka.ensure_topics(connection, [topic], 2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i in range(10):
            producer.send(topic, f"old-{i}".encode(), partition=i % 2)
        producer.flush()
        assert start_group_at_end(connection, topic, group) == 10
        assert group_lag(connection, topic, group) == 0
        for i in range(3):
            producer.send(topic, f"new-{i}".encode(), partition=i % 2)
        producer.flush()
    finally:
        producer.close()
    assert group_lag(connection, topic, group) == 3
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        read = sorted(message.value.decode() for message in consumer)
    finally:
        consumer.close()
    assert read == ["new-0", "new-1", "new-2"]
    assert start_group_at_end(connection, topic, group) == 3
