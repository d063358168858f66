"""Reading the alerts topic as a downstream consumer would: committed transactions only."""

from __future__ import annotations

import json
import time
from typing import Iterator

from streamad.config import JobConfig


def read_topic(bootstrap_servers: str, topic: str, from_beginning: bool = True,
               idle_timeout_s: float | None = 10, until=None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) from `topic` with isolation.level=read_committed.

    Stops after `idle_timeout_s` without a message (None: never), or when `until()` is true
    while idle.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None,
                             isolation_level="read_committed", enable_auto_commit=False,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             consumer_timeout_ms=1000, client_id="streamad-alerts")
    last = time.monotonic()
    try:
        while True:
            for message in consumer:
                last = time.monotonic()
                yield message.key, message.value
            idle = time.monotonic() - last
            if idle_timeout_s is not None and idle >= idle_timeout_s:
                return
            if until is not None and until():
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


def alerts(config: JobConfig, **kwargs) -> Iterator[dict]:
    for _, value in read_topic(config.kafka.bootstrap_servers, config.kafka.alerts_topic,
                               **kwargs):
        yield json.loads(value)
