"""Reading what the job wrote, and computing what it should have written, offline."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from models.artifact import load_artifact
from models.data import TIME_MS_COLUMN
from models.train import features_for, windows_for
from streamad.alerts import read_topic
from streamad.config import JobConfig
from streamad.replay import make_producer
from streamad.stack import influxdb


def expected_windows(config: JobConfig, events: pd.DataFrame) -> pd.DataFrame:
    """Key, window bounds, features, score and decision of every window, in plain Python."""
    artifact = load_artifact(config.artifact_path)
    aggregates = windows_for(events, config)
    features = features_for(aggregates, config)
    scores = artifact.scorer.score_samples(features[artifact.feature_names].to_numpy())
    frame = aggregates[[config.schema.key_field, "window_start_ms", "window_end_ms"]].copy()
    frame["score"] = scores
    frame["is_anomaly"] = scores > artifact.threshold
    return pd.concat([frame, features], axis=1).rename(columns={config.schema.key_field: "key"})


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
            read_topic(config.kafka.bootstrap_servers, topic, idle_timeout_s=idle_s)]


def produce(config: JobConfig, messages, partition: int | None = None) -> None:
    producer = make_producer(config.kafka.bootstrap_servers, compression_type=None)
    try:
        for key, value in messages:
            producer.send(config.kafka.events_topic, key=key, value=value, partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def wait_for(check, timeout_s: float, what: str, interval_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


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
    for column in [c for c in expected.columns if "__" in c or c == "event_count"]:
        np.testing.assert_allclose(merged[f"{column}_job"].astype(float), merged[column],
                                   rtol=1e-9, atol=1e-12, err_msg=column)


def alerts_key(alert: dict) -> tuple:
    return alert["key"], alert["window_end"]


def iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
