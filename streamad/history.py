"""Historical events from the events topic: a bounded read, for training.

Reads every partition from its beginning up to the end it had when the read started
(read_committed), keeps the events the job would accept, and says how many it did not.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from models.data import TIME_MS_COLUMN
from streamad.config import JobConfig
from streamad.events import parse_time_ms, validate_event

log = logging.getLogger(__name__)


def read_events_topic(config: JobConfig, max_events: int | None = None
                      ) -> tuple[pd.DataFrame, dict]:
    """Events of the events topic as (frame of key, event_time_ms, metrics; reference)."""
    from kafka import KafkaConsumer, TopicPartition

    schema = config.schema
    topic = config.kafka.events_topic
    consumer = KafkaConsumer(**config.kafka.client_settings(), group_id=None,
                             isolation_level="read_committed", enable_auto_commit=False,
                             client_id="streamad-train")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist at {config.kafka.bootstrap_servers}.")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        starts = {tp: consumer.position(tp) for tp in partitions}
        ends = consumer.end_offsets(partitions)
        rows, rejected, remaining = [], 0, {tp for tp in partitions if starts[tp] < ends[tp]}
        while remaining and (max_events is None or len(rows) < max_events):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    row = _valid_row(record.value, config)
                    if row is None:
                        rejected += 1
                    else:
                        rows.append(row)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    rows = rows[:max_events] if max_events is not None else rows
    columns = [schema.key_field, TIME_MS_COLUMN, *schema.metric_fields]
    frame = pd.DataFrame(rows, columns=columns)
    frame[TIME_MS_COLUMN] = frame[TIME_MS_COLUMN].astype(np.int64)
    if rejected:
        log.warning("%d event(s) of %s were not valid and were left out", rejected, topic)
    reference = {"topic": topic, "bootstrap_servers": config.kafka.bootstrap_servers,
                 "offsets": {str(tp.partition): [starts[tp], ends[tp]] for tp in partitions},
                 "rejected_events": rejected}
    return frame, reference


def _valid_row(payload: bytes | None, config: JobConfig) -> list | None:
    import json
    schema = config.schema
    try:
        raw_time = json.loads(payload).get(schema.time_field) if payload else None
    except (ValueError, AttributeError):
        raw_time = None
    time_ms = parse_time_ms(raw_time, schema.time_format) if raw_time is not None else None
    reason, key, values = validate_event(payload, schema.key_field, schema.time_field,
                                         schema.metric_fields, time_ok=time_ms is not None,
                                         time_format=schema.time_format)
    if reason is not None:
        return None
    return [key, time_ms, *values]
