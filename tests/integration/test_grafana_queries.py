"""Every query of the shipped Grafana dashboard runs on the real InfluxDB and finds the data
that the job's InfluxDB writer wrote."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from pyflink.table.udf import FunctionContext

from streamad.stack import influxdb
from udfs.influx_sink import WriteScoresToInflux

DASHBOARD = Path(__file__).resolve().parents[2] / "docker/grafana/dashboards/streamad.json"
MACHINES = ["machine-a", "machine-b"]
START_MS = 1_704_067_200_000


def _grafana_macros(query: str, measurement: str) -> str:
    """Substitute what Grafana substitutes before a query reaches InfluxDB."""
    end_ms = START_MS + 3 * 3_600_000
    return (query.replace('"window_scores"', f'"{measurement}"')
            .replace("$timeFilter", f"time >= {START_MS}ms and time <= {end_ms}ms")
            .replace("$__interval", "10m")
            .replace("/^$machine$/", "/^(" + "|".join(MACHINES) + ")$/"))


def _write_scores(config, measurement: str) -> int:
    features = ["event_count", "m00__mean"]
    writer = WriteScoresToInflux(config.influxdb.url, config.influxdb.org, config.influxdb.bucket,
                                 measurement, "machine", features, None, 10_000)
    writer.open(FunctionContext(None, None))  # as Flink opens it, Python metrics off
    try:
        n = 12
        ends = pd.Series(pd.to_datetime(START_MS + 600_000 * np.arange(1, n + 1), unit="ms"))
        for machine in MACHINES:
            score = pd.Series(np.linspace(0.4, 0.7, n))
            written = writer.eval(pd.Series([machine] * n), ends, pd.Series(["iforest-test"] * n),
                                  score, score, score > 0.6, pd.Series([0.6] * n),
                                  pd.Series(["m06,m16" if i % 2 else "" for i in range(n)]),
                                  pd.Series([10.0] * n), pd.Series(np.arange(n) / 10))
            assert written.sum() == n
    finally:
        writer.close()
    return n


def test_every_dashboard_query_returns_series(stack_config):
    config = stack_config
    measurement = f"grafana_{uuid.uuid4().hex[:8]}"
    per_machine = _write_scores(config, measurement)
    dashboard = json.loads(DASHBOARD.read_text())
    variable = dashboard["templating"]["list"][0]["query"]
    body = influxdb.query(config.influxdb.url, _grafana_macros(variable, measurement),
                          database=config.influxdb.database, token=config.influxdb.read_token())
    assert sorted(v[1] for v in body["results"][0]["series"][0]["values"]) == MACHINES

    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query = _grafana_macros(target["query"], measurement)
            body = influxdb.query(config.influxdb.url, query, database=config.influxdb.database,
                                  token=config.influxdb.read_token())
            series = body["results"][0].get("series")
            assert series, f"panel {panel['title']!r}: no data for {query}"
            values = [row for s in series for row in s["values"]]
            assert values, panel["title"]
            if panel["title"] == "Latest anomalous windows":
                # the written scores above 0.6, on every machine
                above = int((np.linspace(0.4, 0.7, per_machine) > 0.6).sum())
                assert len(values) == above * len(MACHINES)
                assert all(row[1] > 0.6 for row in values)
            if panel["title"].startswith("Metrics out of their training range"):
                # every other window has two metrics out of range: each 10-minute bucket
                # holds one window, so the buckets alternate 0 and 2
                assert sorted({row[1] for row in values}) == [0, 2]


def test_rewriting_a_window_overwrites_its_point(stack_config):
    """A replayed window (same key, model version, window end) does not add a point."""
    config = stack_config
    measurement = f"idempotent_{uuid.uuid4().hex[:8]}"
    per_machine = _write_scores(config, measurement)
    _write_scores(config, measurement)
    body = influxdb.query(config.influxdb.url, f'SELECT count("score") FROM "{measurement}"',
                          database=config.influxdb.database, token=config.influxdb.read_token())
    assert body["results"][0]["series"][0]["values"][0][1] == per_machine * len(MACHINES)
