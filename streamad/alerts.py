"""Reading topics as a downstream consumer would (committed transactions only), and how far
the job has read its own."""

from __future__ import annotations

import json
import time
from typing import Iterator, NamedTuple

from streamad.config import KafkaConfig


def _consumer(connection: KafkaConfig, from_beginning: bool = True):
    from kafka import KafkaConsumer
    return KafkaConsumer(**connection.client_settings(), group_id=None,
                         isolation_level="read_committed", enable_auto_commit=False,
                         auto_offset_reset="earliest" if from_beginning else "latest",
                         consumer_timeout_ms=1000, client_id="streamad-alerts")


def end_offsets(connection: KafkaConfig, topic: str) -> dict[int, int]:
    """The committed end of each partition of `topic` now: where a reader of what comes
    next starts."""
    from kafka import TopicPartition
    consumer = _consumer(connection)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _group_consumer(connection: KafkaConfig, group_id: str, client_id: str):
    """A consumer that reads and commits `group_id`'s offsets, without joining the group."""
    from kafka import KafkaConsumer
    return KafkaConsumer(**connection.client_settings(), group_id=group_id,
                         enable_auto_commit=False, client_id=client_id)


class _GroupPosition(NamedTuple):
    """Where a consumer group stands on a topic."""
    partitions: list  # the topic's partitions (TopicPartition)
    ends: dict  # each partition's end offset now
    unread: int  # messages past the group's committed offsets


def _group_position(consumer, topic: str) -> _GroupPosition:
    from kafka import TopicPartition
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(partitions)
    return _GroupPosition(partitions, ends,
                          sum(max(ends[tp] - (consumer.committed(tp) or 0), 0)
                              for tp in partitions))


def start_group_at_end(connection: KafkaConfig, topic: str, group_id: str) -> int:
    """Commit `topic`'s end offsets now as consumer group `group_id`'s, so that a job of the
    group started next reads only what is written after; returns how many messages the group
    had not read. Only while no job of the group runs: its next checkpoint would commit its
    own offsets over these."""
    from kafka.structs import OffsetAndMetadata
    consumer = _group_consumer(connection, group_id, "streamad-start-at-end")
    try:
        partitions, ends, unread = _group_position(consumer, topic)
        consumer.assign(partitions)
        consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in partitions})
        return unread
    finally:
        consumer.close()


def group_lag(connection: KafkaConfig, topic: str, group_id: str) -> int:
    """Messages of `topic` not yet committed by consumer group `group_id`.

    Flink's Kafka source commits its offsets when a checkpoint completes, the same moment its
    transactional sinks commit: at lag 0, the output for everything read is visible. Asking
    does not join the group.
    """
    consumer = _group_consumer(connection, group_id, "streamad-lag")
    try:
        return _group_position(consumer, topic).unread
    finally:
        consumer.close()


def read_topic(connection: KafkaConfig, topic: str, from_beginning: bool = True,
               idle_timeout_s: float | None = 10, keep_going=None,
               start_offsets: dict[int, int] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) from `topic` with isolation.level=read_committed.

    Starts at `start_offsets` (partition -> offset) when given. Stops after `idle_timeout_s`
    without a message (None: never), but not while `keep_going()` is true.
    """
    from kafka import TopicPartition

    consumer = _consumer(connection, from_beginning)
    if start_offsets is None:
        consumer.subscribe([topic])
    else:
        partitions = {TopicPartition(topic, p): o for p, o in start_offsets.items()}
        consumer.assign(list(partitions))
        for partition, offset in partitions.items():
            consumer.seek(partition, offset)
    last = time.monotonic()
    try:
        while True:
            for message in consumer:
                last = time.monotonic()
                yield message.key, message.value
            if keep_going is not None and keep_going():
                last = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                return
    finally:
        consumer.close()


def _format_driver(driver: dict) -> str:
    """'m06 62% (+37.2 sd)': the metric, its share, and how many of the key's standard
    deviations it is from normal (alerts of earlier versions carry no deviation).

    >>> _format_driver({"metric": "m09", "share": 0.79, "deviation": 1538.46})
    'm09 79% (+1,538 sd)'
    """
    text = f"{driver['metric']} {driver['share']:.0%}"
    deviation = driver.get("deviation")
    if deviation is not None:
        text += f" ({deviation:+,.0f} sd)" if abs(deviation) >= 100 else f" ({deviation:+.1f} sd)"
    return text


def format_alert(value: bytes) -> str:
    """One line per alert (an incident opening or ending, a metric drifting or back) for
    people.

    >>> format_alert(b'{"alert": "open", "key": "m1", "incident_start": "2024-01-01T00:00:00Z",'
    ...     b' "incident_end": null, "opened_at": "2024-01-01T00:15:00Z", "peak_score": 9.5,'
    ...     b' "peak_grade": 0.71, "windows": 2, "threshold": 4.2, "model_version": "pca-1",'
    ...     b' "out_of_range": "m06", "drivers": [{"metric": "m06", "share": 0.62,'
    ...     b' "deviation": 37.21}, {"metric": "m01", "share": 0.2, "deviation": -4.1},'
    ...     b' {"metric": null, "share": null, "deviation": null}]}')
    'OPEN  m1  since 2024-01-01T00:00:00Z  grade 0.71 (score 9.50 > 4.20)  drivers m06 62% (+37.2 sd), m01 20% (-4.1 sd)  out of range: m06  (pca-1)'
    >>> format_alert(b'{"key": "m1", "score": 9.5}')
    '?     not an alert of this version: {"key": "m1", "score": 9.5}'
    """
    try:
        alert = json.loads(value)
        kind = alert["alert"]
    except (ValueError, TypeError, KeyError):
        # An older version's alert, or something else a producer put in the topic.
        return f"?     not an alert of this version: {value[:300].decode(errors='replace')}"
    if kind in ("drift", "drift_end"):
        return _format_drift(alert)
    drivers = ", ".join(_format_driver(d) for d in alert.get("drivers") or [] if d.get("metric"))
    span = (f"since {alert['incident_start']}" if kind == "open" else
            f"{alert['incident_start']} .. {alert['incident_end']}, {alert['windows']} windows")
    line = (f"{kind.upper():5} {alert['key']}  {span}  grade {alert['peak_grade']:.2f} "
            f"(score {alert['peak_score']:.2f} > {alert['threshold']:.2f})  drivers {drivers}")
    if alert.get("out_of_range"):
        line += f"  out of range: {alert['out_of_range']}"
    return line + f"  ({alert['model_version']})"


def _format_drift(alert: dict) -> str:
    """
    >>> print(_format_drift({"alert": "drift", "key": "m1", "out_of_range": "m06",
    ...     "incident_start": "2024-01-01T00:00:00Z", "incident_end": None,
    ...     "opened_at": "2024-01-02T00:00:00Z", "windows": 288, "model_version": "pca-1"}))
    DRIFT m1  m06 out of its training range since 2024-01-01T00:00:00Z (288 windows): retrain  (pca-1)
    """
    if alert["alert"] == "drift":
        what = (f"out of its training range since {alert['incident_start']} "
                f"({alert['windows']} windows): retrain")
    else:
        what = (f"back in range; it was out {alert['incident_start']} .. "
                f"{alert['incident_end']} ({alert['windows']} windows)")
    return (f"{alert['alert'].upper():5} {alert['key']}  {alert['out_of_range']} {what}  "
            f"({alert['model_version']})")
