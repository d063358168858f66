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
    return host, kafka.plain_port_of(config.kafka.security_protocol, int(port))


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
