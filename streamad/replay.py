"""Replaying historical events from CSV files into the events topic, faster than real time.

Events from all files are merged in event-time order (as they would have arrived live), and
each is keyed by the schema's key so all events of one key land on one partition, in order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from models.data import TIME_MS_COLUMN, load_events_csv
from streamad.config import JobConfig, KafkaConfig
from streamad.events import encode_event

log = logging.getLogger(__name__)


def make_producer(connection: KafkaConfig, **overrides):
    from kafka import KafkaProducer
    settings = dict(**connection.client_settings(), acks="all", linger_ms=20,
                    batch_size=256 * 1024, compression_type="gzip", retries=10,
                    client_id="streamad-replay")
    settings.update(overrides)
    return KafkaProducer(**settings)


def ordered_events(paths: Sequence[Path], config: JobConfig,
                   limit_per_key: int | None = None) -> pd.DataFrame:
    events = load_events_csv(paths, config.schema)
    if limit_per_key is not None:
        events = events.groupby(config.schema.key_field, sort=False).head(limit_per_key)
    order = np.lexsort((np.arange(len(events)), events[TIME_MS_COLUMN].to_numpy()))
    return events.iloc[order].reset_index(drop=True)


def encoded(events: pd.DataFrame, config: JobConfig) -> Iterable[tuple[bytes, bytes, int]]:
    """(key, value, event time ms) of each event, in order."""
    schema = config.schema
    metrics = list(schema.metric_fields)
    values = events[metrics].to_numpy(dtype=np.float64)
    for key, time_ms, row in zip(events[schema.key_field], events[TIME_MS_COLUMN], values):
        payload = encode_event(key, int(time_ms), dict(zip(metrics, row)), schema.key_field,
                               schema.time_field, schema.time_format)
        yield str(key).encode(), payload, int(time_ms)


def send(messages: Iterable[tuple[bytes, bytes | None, int]], config: JobConfig,
         progress: Callable[[int], None] | None = None, speedup: float | None = None) -> int:
    """Produce (key, value, event time ms) triples, as `encoded` yields them, to the events
    topic; returns how many were sent.

    With `speedup`, events are paced at that many times real time by their event times;
    without, they go as fast as the broker takes them.
    """
    producer = make_producer(config.kafka)
    sent = 0
    started = time.monotonic()
    first_ms = None
    try:
        for key, value, time_ms in messages:
            if speedup:
                first_ms = time_ms if first_ms is None else first_ms
                wait = (time_ms - first_ms) / 1000 / speedup - (time.monotonic() - started)
                if wait > 0:
                    producer.flush()
                    time.sleep(wait)
            producer.send(config.kafka.events_topic, key=key, value=value)
            sent += 1
            if progress and sent % 5000 == 0:
                progress(sent)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=30)
    if progress:
        progress(sent)
    return sent
