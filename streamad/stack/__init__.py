"""The local stack: Kafka, Flink and InfluxDB, installed into the cache and started by PID."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamad.config import JobConfig

from . import flink, influxdb, kafka, process

log = logging.getLogger(__name__)


@dataclass
class StackStatus:
    name: str
    pid: int | None
    endpoint: str

    @property
    def running(self) -> bool:
        return self.pid is not None


def kafka_address(config: JobConfig) -> tuple[str, int]:
    """The (host, port) the local broker's plain listener takes: the first of
    kafka.bootstrap_servers, or, when kafka.security_protocol is a login one, the plain port
    whose login listener of that protocol it is (so that a configuration made to try
    credentials against the stack starts, or finds, the same broker)."""
    host, _, port = config.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    protocol = config.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return host, int(port)
    plain_port = kafka.plain_port_of_login(protocol, int(port))
    if plain_port is None:
        raise process.StackError(
            f"kafka.security_protocol is {protocol}, which the local stack's broker does not "
            f"serve: it listens with PLAINTEXT, and with a login on SASL_PLAINTEXT and "
            f"SASL_SSL. Use one of those with the stack; against a broker of your own, "
            f"submit with 'streamad submit' and leave 'stack up' and 'demo' aside.")
    return host, plain_port


def up(config: JobConfig, progress=print) -> list[str]:
    """Install what is missing, start what is not running, wait until healthy.

    Returns the names of the servers this call started (the ones a caller may stop again).
    """
    started = []
    host, port = kafka_address(config)
    progress(f"Kafka      {config.kafka.bootstrap_servers} ...")
    if kafka.start(host, port):
        started.append(kafka.NAME)
    created = kafka.ensure_topics(config.kafka,
                                  [config.kafka.events_topic, config.kafka.alerts_topic,
                                   config.kafka.dead_letter_topic], config.kafka.partitions)
    if created:
        progress(f"           created topics {', '.join(created)}")
    progress(f"InfluxDB   {config.influxdb.url} ...")
    if influxdb.start(config.influxdb.url, config.influxdb.database):
        started.append(influxdb.NAME)
    progress(f"Flink      {config.flink.rest_url} ...")
    if flink.start(config.flink.rest_url):
        started.append("flink")
    return started


def down(names: list[str] | None = None) -> list[str]:
    """Stop the servers we started (all of them, or `names`); returns the ones stopped."""
    stopped = []
    for name, stop in (("flink", flink.stop), (influxdb.NAME, influxdb.stop),
                       (kafka.NAME, kafka.stop)):
        if (names is None or name in names) and stop():
            stopped.append(name)
    return stopped


def status(config: JobConfig) -> list[StackStatus]:
    return [
        StackStatus("kafka", process.running_pid(kafka.NAME), config.kafka.bootstrap_servers),
        StackStatus("influxdb", process.running_pid(influxdb.NAME), config.influxdb.url),
        StackStatus("flink-jobmanager", process.running_pid(flink.JOBMANAGER),
                    config.flink.rest_url),
        StackStatus("flink-taskmanager", process.running_pid(flink.TASKMANAGER), "-"),
    ]
