"""Reading topics as a downstream consumer would (committed transactions only), and how far
the job has read its own."""

from __future__ import annotations

import json
import time
from typing import Iterator



def _consumer(bootstrap_servers: str, from_beginning: bool = True):
    from kafka import KafkaConsumer
    return KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                         isolation_level="read_committed", enable_auto_commit=False,
                         auto_offset_reset="earliest" if from_beginning else "latest",
                         consumer_timeout_ms=1000, client_id="streamad-alerts")


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """The committed end of each partition of `topic` now: where a reader of what comes
    next starts."""
    from kafka import TopicPartition
    consumer = _consumer(bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def group_lag(bootstrap_servers: str, topic: str, group_id: str) -> int:
    """Messages of `topic` not yet committed by consumer group `group_id`.

    Flink's Kafka source commits its offsets when a checkpoint completes, the same moment its
    transactional sinks commit: at lag 0, the output for everything read is visible. Asking
    does not join the group.
    """
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id,
                             enable_auto_commit=False, client_id="streamad-lag")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        return sum(max(ends[tp] - (consumer.committed(tp) or 0), 0) for tp in partitions)
    finally:
        consumer.close()


def read_topic(bootstrap_servers: str, topic: str, from_beginning: bool = True,
               idle_timeout_s: float | None = 10, keep_going=None,
               start_offsets: dict[int, int] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) from `topic` with isolation.level=read_committed.

    Starts at `start_offsets` (partition -> offset) when given. Stops after `idle_timeout_s`
    without a message (None: never), but not while `keep_going()` is true.
    """
    from kafka import TopicPartition

    consumer = _consumer(bootstrap_servers, from_beginning)
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


def format_alert(value: bytes) -> str:
    """One line per alert for people.

    >>> format_alert(b'{"key": "m1", "window_start": "2024-01-01T00:00:00Z", '
    ...              b'"window_end": "2024-01-01T00:10:00Z", "score": 0.61, "threshold": 0.57, '
    ...              b'"model_version": "iforest-1"}')
    'ALERT m1  2024-01-01T00:00:00Z .. 2024-01-01T00:10:00Z  score 0.610 > threshold 0.570  (iforest-1)'
    """
    alert = json.loads(value)
    return (f"ALERT {alert['key']}  {alert['window_start']} .. {alert['window_end']}  "
            f"score {alert['score']:.3f} > threshold {alert['threshold']:.3f}  "
            f"({alert['model_version']})")

