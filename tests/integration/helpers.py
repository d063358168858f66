"""Reading what the job wrote, and computing what it should have written, offline."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pandas as pd

from models.artifact import load_artifact
from models.train import features_for, windows_for
from streamad.alerts import read_topic
from streamad.config import JobConfig
from streamad.replay import make_producer
from streamad.stack import influxdb
from udfs.incident_alerts import alert_identity, alert_mismatch, offline_alerts

# Malformed events, one of each kind the job dead-letters.
BAD_EVENTS = [
    b"this is not json",
    b'["an", "array"]',
    b'{"timestamp": "2024-01-17T00:00:00Z", "m00": 1}',
    b'{"machine": "machine-1-6", "m00": 0.5}',
    b'{"machine": "machine-1-6", "timestamp": "2024-01-17T00:00:00+02:00", "m00": 1}',
    b'{"machine": "machine-1-6", "timestamp": "17 Jan 2024", "m00": 1}',
    b'{"machine": "machine-2-1", "timestamp": "2024-01-17T00:00:00Z", "m00": 1}',
    b'{"machine": "machine-2-1", "timestamp": "2024-01-17T00:00:00Z", "m00": "busy"}',
    b'{"machine": "machine-3-3", "timestamp": "2024-01-17T00:00:00Z", "m00": NaN}',
]


def flush_event(config: JobConfig) -> bytes:
    """An event far in the future: sent on every partition, it moves the watermark past all
    the real windows (its own windows never close, and are not expected)."""
    return json.dumps({config.schema.key_field: "flush",
                       config.schema.time_field: "2030-01-01T00:00:00Z",
                       **{m: 0.0 for m in config.schema.metric_fields}}).encode()


def flush_all_partitions(config: JobConfig) -> None:
    """`flush_event` on every partition of the events topic."""
    for partition in range(config.kafka.partitions):
        produce(config, [(b"flush", flush_event(config))], partition=partition)


def expected_windows(config: JobConfig, events: pd.DataFrame) -> pd.DataFrame:
    """Key, window bounds, features, score, grade, decision and drivers of every window,
    computed offline by the scoring core."""
    artifact = load_artifact(config.artifact_path)
    aggregates = windows_for(events, config)
    features = features_for(aggregates, config)
    scored = artifact.scorer.score(features, aggregates[config.schema.key_field])
    frame = aggregates[[config.schema.key_field, "window_start_ms", "window_end_ms"]].copy()
    frame = pd.concat([frame, scored, features[artifact.feature_names]], axis=1)
    return frame.rename(columns={config.schema.key_field: "key"})


def expected_alerts(config: JobConfig, windows: pd.DataFrame) -> list[dict]:
    """The alerts the incident and drift policies give on `expected_windows`, offline."""
    return offline_alerts(windows, config.alerts.policy(config.window),
                          config.alerts.drift_policy(), config.model.explain_top)


def assert_alerts_match(alerts: list[dict], expected: list[dict]) -> None:
    """Each expected alert exactly once, with the peak, grade and drivers computed offline."""
    assert Counter(map(alert_identity, alerts)) == Counter(map(alert_identity, expected))
    by_identity = {alert_identity(a): a for a in expected}
    for alert in alerts:
        problem = alert_mismatch(alert, by_identity[alert_identity(alert)])
        assert problem is None, f"{alert_identity(alert)}: {problem}"


def influx_points(config: JobConfig) -> pd.DataFrame:
    body = influxdb.query(config.influxdb.url, f'SELECT * FROM "{config.influxdb.measurement}"',
                          database=config.influxdb.database,
                          token=config.influxdb.read_token())
    series = body["results"][0].get("series", [])
    if not series:
        return pd.DataFrame(columns=["time", config.schema.key_field, "score"])
    return pd.DataFrame(series[0]["values"], columns=series[0]["columns"])


def influx_count(config: JobConfig) -> int:
    body = influxdb.query(config.influxdb.url,
                          f'SELECT count("score") FROM "{config.influxdb.measurement}"',
                          database=config.influxdb.database, token=config.influxdb.read_token())
    series = body["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def read_json_topic(config: JobConfig, topic: str, idle_s: float = 5) -> list[dict]:
    return [json.loads(value) for _, value in
            read_topic(config.kafka, topic, idle_timeout_s=idle_s)]


def produce(config: JobConfig, messages, partition: int | None = None) -> None:
    producer = make_producer(config.kafka, compression_type=None)
    try:
        for key, value in messages:
            producer.send(config.kafka.events_topic, key=key, value=value, partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def feed_and_wait_for_scores(config: JobConfig, messages, expected: pd.DataFrame) -> None:
    """Send `messages` and then the malformed BAD_EVENTS to a running job, flush every
    partition's last windows, and wait until InfluxDB holds a point for each expected
    window."""
    produce(config, list(messages) + [(b"machine-1-6", bad) for bad in BAD_EVENTS])
    flush_all_partitions(config)
    wait_for_count(lambda: influx_count(config), len(expected), stalled_s=180,
                   timeout_s=600, what="window scores in InfluxDB")


def wait_for(check, timeout_s: float, what: str, interval_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def wait_for_count(count, target: int, stalled_s: float, timeout_s: float, what: str,
                   interval_s: float = 2.0) -> int:
    """Wait until `count()` reaches `target` for as long as it keeps growing, at most
    `timeout_s`: it fails once it has not grown for `stalled_s`, so a slow (shared, loaded)
    machine is not mistaken for a stuck job, and the message says how far it got."""
    start = last_growth = time.monotonic()
    best = -1
    while True:
        current = count()
        if current >= target:
            return current
        now = time.monotonic()
        if current > best:
            best, last_growth = current, now
        if now - last_growth > stalled_s or now - start > timeout_s:
            raise AssertionError(f"{what}: {best} of {target} after {now - start:.0f} s, the "
                                 f"last new one {now - last_growth:.0f} s ago")
        time.sleep(interval_s)


def assert_points_match(points: pd.DataFrame, expected: pd.DataFrame, key_field: str) -> None:
    """Window for window and key for key, the job's InfluxDB points equal the offline result."""
    got = points.rename(columns={key_field: "key", "time": "window_end_ms"})
    merged = expected.merge(got, on=["key", "window_end_ms"], how="outer",
                            suffixes=("", "_job"), indicator=True)
    only = merged[merged["_merge"] != "both"]
    assert only.empty, f"windows in one side only:\n{only[['key', 'window_end_ms', '_merge']]}"
    np.testing.assert_allclose(merged["score_job"].astype(float), merged["score"], rtol=1e-9,
                               atol=1e-12, err_msg="scores differ")
    assert (merged["is_anomaly_job"].astype(bool) == merged["is_anomaly"]).all()
    np.testing.assert_allclose(merged["grade_job"].astype(float), merged["grade"], rtol=1e-9,
                               atol=1e-12, err_msg="grades differ")
    out_of_range = merged["out_of_range"].map(",".join)
    assert (merged["out_of_range_job"].fillna("") == out_of_range).all(), "out_of_range differs"
    assert (merged["out_of_range_count"] == merged["out_of_range"].map(len)).all()
    for column in [c for c in expected.columns if "__" in c or c == "event_count"]:
        np.testing.assert_allclose(merged[f"{column}_job"].astype(float), merged[column],
                                   rtol=1e-9, atol=1e-12, err_msg=column)
