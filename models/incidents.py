"""Alert policy: anomalous windows of a key become incidents, and one incident one alert.

A single anomalous window is often noise, and a real problem spans many windows. An incident
opens after ``open_after`` consecutive anomalous windows of a key, stays open while windows
are anomalous, and ends after ``close_after`` consecutive normal windows (the key has
recovered). An open incident raises one alert when it opens and one update when it ends,
never one per window. After an incident ends, a new one needs ``open_after`` anomalous
windows again. A key's first ``warmup`` windows open nothing: they began before its first
event, so they hold fewer events than a full window and look anomalous for that alone.

`IncidentTracker` is the per-key state machine; its state is a small dict so the streaming
job can keep it in Flink state. `incidents_of` runs it over a whole history offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class IncidentPolicy:
    open_after: int = 2
    close_after: int = 3
    warmup: int = 0

    def __post_init__(self):
        for name, least in (("open_after", 1), ("close_after", 1), ("warmup", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number of windows >= {least}, got "
                                 f"{value!r}.")


@dataclass
class Incident:
    key: str
    # Times are those of the windows fed in (epoch ms offline, ISO text in the job):
    start: object              # window end time of the first anomalous window
    opened_at: object          # window end time of the window that opened it (alert time)
    end: object | None = None  # window end time of the last anomalous window, once ended
    peak_score: float = float("-inf")
    peak_grade: float = 0.0
    windows: int = 0
    # Whatever the caller passed along with the peak window (its drivers, say), as given.
    peak_details: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"key": self.key, "start": self.start, "opened_at": self.opened_at,
                "end": self.end, "peak_score": self.peak_score, "peak_grade": self.peak_grade,
                "windows": self.windows, "peak_details": self.peak_details}


class IncidentTracker:
    """The policy for one key, fed windows in time order.

    >>> tracker = IncidentTracker("a", IncidentPolicy(open_after=2, close_after=2))
    >>> [e and e[0] for e in (tracker.update(t, anomalous, 1.0, 0.6)
    ...                       for t, anomalous in enumerate([1, 1, 1, 0, 0, 1]))]
    [None, 'open', None, None, 'end', None]
    """

    def __init__(self, key: str, policy: IncidentPolicy):
        self.key = key
        self.policy = policy
        self.run_start: int | None = None
        self.anomalous_run = 0
        self.normal_run = 0
        self.pending: list = []  # (score, grade, details) of the run before opening
        self.incident: Incident | None = None
        self.last_anomalous: int | None = None
        self.seen = 0

    def update(self, time: int, anomalous: bool, score: float, grade: float,
               details: list | None = None):
        """Feed one window; returns ("open" | "end", Incident) when that happens, else None."""
        if self.seen < self.policy.warmup:
            self.seen += 1
            anomalous = False
        if anomalous:
            self.normal_run = 0
            self.anomalous_run += 1
            self.last_anomalous = time
            if self.incident is not None:
                self._peak(self.incident, score, grade, details)
                self.incident.windows += 1
                return None
            if self.anomalous_run == 1:
                self.run_start = time
                self.pending = []
            self.pending.append((score, grade, details))
            if self.anomalous_run >= self.policy.open_after:
                incident = Incident(self.key, start=self.run_start, opened_at=time)
                for pending in self.pending:
                    self._peak(incident, *pending)
                incident.windows = len(self.pending)
                self.incident, self.pending = incident, []
                return "open", incident
            return None
        self.anomalous_run = 0
        self.pending = []
        if self.incident is None:
            return None
        self.normal_run += 1
        if self.normal_run >= self.policy.close_after:
            ended, self.incident = self.incident, None
            ended.end = self.last_anomalous
            self.normal_run = 0
            return "end", ended
        return None

    def state(self) -> dict:
        """Everything the tracker remembers, as plain data (kept in Flink keyed state)."""
        return {"run_start": self.run_start, "anomalous_run": self.anomalous_run,
                "normal_run": self.normal_run, "pending": self.pending,
                "incident": None if self.incident is None else self.incident.to_dict(),
                "last_anomalous": self.last_anomalous, "seen": self.seen}

    @classmethod
    def from_state(cls, key: str, policy: IncidentPolicy, state: dict | None
                   ) -> "IncidentTracker":
        tracker = cls(key, policy)
        if state:
            tracker.run_start = state["run_start"]
            tracker.anomalous_run = state["anomalous_run"]
            tracker.normal_run = state["normal_run"]
            tracker.pending = list(state["pending"])
            tracker.incident = None if state["incident"] is None else Incident(**state["incident"])
            tracker.last_anomalous = state["last_anomalous"]
            # State written before warm-up existed is past it.
            tracker.seen = state.get("seen", policy.warmup)
        return tracker

    @staticmethod
    def _peak(incident: Incident, score: float, grade: float, details) -> None:
        if score > incident.peak_score:
            incident.peak_score, incident.peak_grade = float(score), float(grade)
            incident.peak_details = list(details or [])


def incidents_of(key: str, windows: Iterable[tuple], policy: IncidentPolicy) -> list[Incident]:
    """All incidents of one key's windows, given as (time, anomalous, score, grade[, details])
    in time order; an incident still open at the end has ``end`` None."""
    tracker = IncidentTracker(key, policy)
    found = []
    for window in windows:
        event = tracker.update(*window)
        if event and event[0] == "open":
            found.append(event[1])
    return found
