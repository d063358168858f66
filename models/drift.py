"""Drift: a metric that stays out of its training range, told apart from a passing spike.

Every scored window lists the metrics with a feature at the scaling cap (``out_of_range``:
``model.cap`` training standard deviations or more from the key's normal). One such window is
an anomaly's business. A metric that is out of range window after window for hours has
drifted: the model's picture of normal is out of date for it, its windows keep scoring high,
and the remedy is a retrain, not an incident.

`DriftTracker` follows, per key, each metric's *run* out of range: the run goes on while the
gaps of in-range windows in it are shorter than ``clear_after``. When a run reaches
``after`` out-of-range windows the metric is declared drifting (one "drift" event); when it
then stays in range for ``clear_after`` windows the run ends (one "drift_end" event). Like
`models.incidents.IncidentTracker`, its state is plain data for Flink keyed state.

Drift is reported, not corrected: on SMD every automatic re-baselining measured made
detection worse (see ``scripts/drift_study.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class DriftPolicy:
    after: int = 288        # out-of-range windows in a run that make it drift (1 day of 5 min)
    clear_after: int = 12   # consecutive in-range windows that end a run

    def __post_init__(self):
        for name in ("after", "clear_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"drift {name} must be a whole number of windows >= 1, got "
                                 f"{value!r}.")


@dataclass
class DriftRun:
    metric: str
    since: object                   # time of the run's first out-of-range window
    last_out: object                # time of its latest out-of-range window
    windows: int = 1                # out-of-range windows in the run
    in_range: int = 0               # consecutive in-range windows since the latest one
    declared_at: object | None = None  # time of the window that made it drift

    @property
    def drifting(self) -> bool:
        return self.declared_at is not None


class DriftTracker:
    """Drift runs of one key's metrics, fed windows in time order.

    >>> tracker = DriftTracker("a", DriftPolicy(after=3, clear_after=2))
    >>> out = [["m1"], ["m1", "m2"], [], ["m1"], [], [], ["m2"]]
    >>> [[(kind, run.metric, run.since, run.windows) for kind, run in tracker.update(t, o)]
    ...  for t, o in enumerate(out)]
    [[], [], [], [('drift', 'm1', 0, 3)], [], [('drift_end', 'm1', 0, 3)], []]
    """

    def __init__(self, key: str, policy: DriftPolicy):
        self.key = key
        self.policy = policy
        self.runs: dict[str, DriftRun] = {}

    def update(self, time, out_of_range: Iterable[str]) -> list[tuple[str, DriftRun]]:
        """Feed one window's out-of-range metrics; returns the ("drift" | "drift_end", run)
        events it causes, in metric order."""
        out = set(out_of_range)
        events = []
        for metric in sorted(out | set(self.runs)):
            run = self.runs.get(metric)
            if metric in out:
                if run is None:
                    self.runs[metric] = run = DriftRun(metric, since=time, last_out=time)
                else:
                    run.windows += 1
                    run.in_range = 0
                    run.last_out = time
                if not run.drifting and run.windows >= self.policy.after:
                    run.declared_at = time
                    events.append(("drift", run))
                continue
            run.in_range += 1
            if run.in_range >= self.policy.clear_after:
                del self.runs[metric]
                if run.drifting:
                    events.append(("drift_end", run))
        return events

    def drifting(self) -> list[str]:
        """The metrics drifting now."""
        return sorted(m for m, run in self.runs.items() if run.drifting)

    def state(self) -> dict:
        return {metric: vars(run).copy() for metric, run in self.runs.items()}

    @classmethod
    def from_state(cls, key: str, policy: DriftPolicy, state: dict | None) -> "DriftTracker":
        tracker = cls(key, policy)
        for metric, fields in (state or {}).items():
            tracker.runs[metric] = DriftRun(**fields)
        return tracker
