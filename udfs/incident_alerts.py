"""The alert policy in the job: a keyed process function around `IncidentTracker` and
`DriftTracker`.

Window scores arrive keyed by the schema's key, in window order. Both trackers' state lives
in Flink keyed state, so it is checkpointed and restored with the job, and alerts stay
exactly-once. One row goes out when an incident opens and one when it ends; one when a metric
starts drifting and one when its drift ends.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.detector import driver_columns, joined_metrics, split_metrics
from models.drift import DriftPolicy, DriftRun, DriftTracker
from models.incidents import IncidentPolicy, IncidentTracker
from udfs.metrics import Counters

# The counter of each kind of alert row.
ALERT_COUNTERS = {"open": "incidents_opened", "end": "incidents_ended",
                  "drift": "drifts_started", "drift_end": "drifts_ended"}


def alert_fields(explain_top: int) -> list[tuple[str, object]]:
    """(name, type) of the rows this function emits; drivers are flat, ranked columns."""
    fields = [("alert", Types.STRING()), ("key", Types.STRING()),
              ("incident_start", Types.STRING()), ("incident_end", Types.STRING()),
              ("opened_at", Types.STRING()), ("peak_score", Types.DOUBLE()),
              ("peak_grade", Types.DOUBLE()), ("windows", Types.INT()),
              ("threshold", Types.DOUBLE()), ("model_version", Types.STRING()),
              ("out_of_range", Types.STRING())]
    for metric, share, deviation in driver_columns(explain_top):
        fields += [(metric, Types.STRING()), (share, Types.DOUBLE()), (deviation, Types.DOUBLE())]
    return fields


def alert_type_info(explain_top: int):
    fields = alert_fields(explain_top)
    return Types.ROW_NAMED([n for n, _ in fields], [t for _, t in fields])


def drift_alert_values(kind: str, key: str, run: DriftRun, model_version: str,
                       explain_top: int) -> list:
    """A drift event in the alert row layout: the run's span, the metric in out_of_range,
    and no score, grade, threshold or drivers (a drift is not scored)."""
    return [kind, key, run.since[0], run.last_out[1] if kind == "drift_end" else None,
            run.declared_at[1], None, None, run.windows, None, model_version, run.metric,
            *[None] * sum(map(len, driver_columns(explain_top)))]


class IncidentAlerts(KeyedProcessFunction):
    """Rows (key, window_start, window_end, score, grade, is_anomaly, threshold,
    model_version, out_of_range, driver_1, driver_1_share, driver_1_deviation, ...) -> alert
    rows."""

    def __init__(self, incident_policy: IncidentPolicy, drift_policy: DriftPolicy,
                 explain_top: int):
        self.incident_policy = incident_policy
        self.drift_policy = drift_policy
        self.explain_top = explain_top
        self._incidents = None
        self._drift = None
        self._counted = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._incidents = runtime_context.get_state(
            ValueStateDescriptor("incident_tracker", Types.PICKLED_BYTE_ARRAY()))
        self._drift = runtime_context.get_state(
            ValueStateDescriptor("drift_tracker", Types.PICKLED_BYTE_ARRAY()))
        self._counted = Counters(runtime_context.get_metrics_group, *ALERT_COUNTERS.values())

    def process_element(self, window: Row, ctx: KeyedProcessFunction.Context):
        key, start, end, score, grade, anomalous, threshold, version, out_of_range = window[:9]
        self._counted.touch()
        # A window's time is its (start, end): an incident runs from the start of its first
        # anomalous window to the end of its last; the peak window's details go along.
        tracker = IncidentTracker.from_state(key, self.incident_policy, self._incidents.value())
        event = tracker.update((start, end), bool(anomalous), score, grade,
                               [threshold, version, out_of_range, *window[9:]])
        self._incidents.update(tracker.state())
        if event is not None:
            kind, incident = event
            self._counted.add(ALERT_COUNTERS[kind])
            threshold, version_at_peak, peak_out_of_range, *drivers = incident.peak_details
            yield Row(kind, key, incident.start[0],
                      None if incident.end is None else incident.end[1], incident.opened_at[1],
                      incident.peak_score, incident.peak_grade, incident.windows, threshold,
                      version_at_peak, peak_out_of_range, *drivers)

        drift = DriftTracker.from_state(key, self.drift_policy, self._drift.value())
        drift_events = drift.update((start, end), split_metrics(out_of_range))
        self._drift.update(drift.state())
        for kind, run in drift_events:
            self._counted.add(ALERT_COUNTERS[kind])
            yield Row(*drift_alert_values(kind, key, run, version, self.explain_top))


def _iso_seconds(ms: int) -> str:
    """A window bound as the job's SQL formats it for the policies (jobs/sql.py)."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def offline_alerts(windows: pd.DataFrame, incident_policy: IncidentPolicy,
                   drift_policy: DriftPolicy, explain_top: int) -> list[dict]:
    """The alerts `IncidentAlerts` gives on `windows`, computed offline: the scored windows
    of any number of keys (columns key, window_start_ms, window_end_ms, score, grade,
    is_anomaly, drivers, out_of_range, as `models.detector.Detector.score` gives them), each
    key's in time order. Each alert is a dict with the fields of the alerts topic (without
    threshold and model_version); drift alerts have no drivers."""
    names = [name for name, _ in alert_fields(explain_top)][:11]
    alerts = []
    for key, own in windows.sort_values("window_end_ms").groupby("key"):
        tracker = IncidentTracker(key, incident_policy)
        drift = DriftTracker(key, drift_policy)
        for row in own.itertuples():
            span = (_iso_seconds(row.window_start_ms), _iso_seconds(row.window_end_ms))
            for kind, run in drift.update(span, row.out_of_range):
                values = drift_alert_values(kind, key, run, "", explain_top)
                alerts.append(dict(zip(names, values[:11])) | {"drivers": []})
            event = tracker.update(span, row.is_anomaly, row.score, row.grade,
                                   [row.drivers, row.out_of_range])
            if event:
                kind, incident = event
                alerts.append({
                    "alert": kind, "key": key, "incident_start": incident.start[0],
                    "incident_end": None if incident.end is None else incident.end[1],
                    "opened_at": incident.opened_at[1], "peak_score": incident.peak_score,
                    "peak_grade": incident.peak_grade, "windows": incident.windows,
                    "drivers": [{"metric": m, "share": s, "deviation": d}
                                for m, s, d in incident.peak_details[0]],
                    "out_of_range": joined_metrics(incident.peak_details[1])})
    return alerts


# Peak scores and grades agree to this relative difference between the job and offline; shares
# are rounded to 4 digits and deviations to 0.01 sd on both paths, so a last digit may round
# the other way.
PEAK_RELATIVE_TOLERANCE = 1e-9
SHARE_TOLERANCE = 1.01e-4
DEVIATION_TOLERANCE = 0.0101


def alert_mismatch(sent: dict, expected: dict) -> str | None:
    """How an alert the job sent differs from the same alert (`alert_identity`) computed
    offline (`offline_alerts`): the first difference, in words; None when they agree."""
    for field in ("incident_end", "windows", "out_of_range"):
        if sent[field] != expected[field]:
            return f"{field} {sent[field]!r}, offline {expected[field]!r}"
    if sent["alert"].startswith("drift"):
        if sent["peak_score"] is not None or sent["threshold"] is not None:
            return "a drift alert with a peak score or threshold"
        return None
    for field in ("peak_score", "peak_grade"):
        if not np.isclose(sent[field], expected[field], rtol=PEAK_RELATIVE_TOLERANCE, atol=0):
            return f"{field} {sent[field]!r}, offline {expected[field]!r}"
    if not sent["peak_score"] > sent["threshold"]:
        return f"peak score {sent['peak_score']!r} not above the threshold {sent['threshold']!r}"
    drivers = [d for d in sent["drivers"] if d["metric"] is not None]
    if [d["metric"] for d in drivers] != [d["metric"] for d in expected["drivers"]]:
        return (f"drivers {[d['metric'] for d in drivers]}, offline "
                f"{[d['metric'] for d in expected['drivers']]}")
    for field, tolerance in (("share", SHARE_TOLERANCE), ("deviation", DEVIATION_TOLERANCE)):
        got, want = ([d[field] for d in ds] for ds in (drivers, expected["drivers"]))
        if not np.allclose(got, want, rtol=1e-7, atol=tolerance):
            return f"driver {field}s {got}, offline {want}"
    return None


def alert_identity(alert: dict) -> tuple:
    """What tells one alert from another: its kind, key, incident start, when it was
    raised, and the metrics out of range (a drift alert's metric)."""
    return (alert["alert"], alert["key"], alert["incident_start"], alert["opened_at"],
            alert["out_of_range"])
