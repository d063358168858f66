"""The alert policy in the job: a keyed process function around `IncidentTracker`.

Window scores arrive keyed by the schema's key, in window order. The tracker's state lives in
Flink keyed state, so it is checkpointed and restored with the job, and alerts stay
exactly-once. One row goes out when an incident opens and one when it ends.
"""

from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from models.detector import driver_columns
from models.incidents import IncidentPolicy, IncidentTracker


def alert_fields(explain_top: int) -> list[tuple[str, object]]:
    """(name, type) of the rows this function emits; drivers are flat, ranked columns."""
    fields = [("alert", Types.STRING()), ("key", Types.STRING()),
              ("incident_start", Types.STRING()), ("incident_end", Types.STRING()),
              ("opened_at", Types.STRING()), ("peak_score", Types.DOUBLE()),
              ("peak_grade", Types.DOUBLE()), ("windows", Types.INT()),
              ("threshold", Types.DOUBLE()), ("model_version", Types.STRING()),
              ("out_of_range", Types.STRING())]
    for metric, share in driver_columns(explain_top):
        fields += [(metric, Types.STRING()), (share, Types.DOUBLE())]
    return fields


def alert_type_info(explain_top: int):
    fields = alert_fields(explain_top)
    return Types.ROW_NAMED([n for n, _ in fields], [t for _, t in fields])


class IncidentAlerts(KeyedProcessFunction):
    """Rows (key, window_start, window_end, score, grade, is_anomaly, threshold,
    model_version, out_of_range, driver_1, driver_1_share, ...) -> alert rows."""

    def __init__(self, open_after: int, close_after: int, explain_top: int):
        self.open_after = open_after
        self.close_after = close_after
        self.explain_top = explain_top
        self._state = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._policy = IncidentPolicy(self.open_after, self.close_after)
        self._state = runtime_context.get_state(
            ValueStateDescriptor("incident_tracker", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, window: Row, ctx: KeyedProcessFunction.Context):
        key, start, end, score, grade, anomalous, threshold, version, out_of_range = window[:9]
        tracker = IncidentTracker.from_state(key, self._policy, self._state.value())
        # A window's time is its (start, end): an incident runs from the start of its first
        # anomalous window to the end of its last; the peak window's details go along.
        event = tracker.update((start, end), bool(anomalous), score, grade,
                               [threshold, version, out_of_range, *window[9:]])
        self._state.update(tracker.state())
        if event is None:
            return
        kind, incident = event
        threshold, version, out_of_range, *drivers = incident.peak_details
        yield Row(kind, key, incident.start[0],
                  None if incident.end is None else incident.end[1], incident.opened_at[1],
                  incident.peak_score, incident.peak_grade, incident.windows, threshold,
                  version, out_of_range, *drivers)
