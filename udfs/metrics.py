"""The job's own Flink metrics: counters in a ``streamad`` group of each operator that runs
Python, beside Flink's built-in ones (records in and out, back pressure).

Operators see them in the Flink web UI (the job's graph, a task's Metrics tab, as
``<operator>.streamad.<name>``), in the REST API (`streamad.stack.flink.job_counters` sums
them over subtasks) and through the Prometheus reporter of ``flink-conf/config.yaml``. Like all
Flink metrics they are not checkpointed: after a restart a subtask counts from 0 again,
replayed records included.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

METRIC_GROUP = "streamad"


class Counters:
    """Named counters in the ``streamad`` group of the metric group `metric_group_of()`
    returns (a FunctionContext's or a RuntimeContext's), registered in ``open()``. With
    ``python.metric.enabled: false`` PyFlink gives no group: the job runs on, uncounted."""

    def __init__(self, metric_group_of, *names: str):
        try:
            group = metric_group_of().add_group(METRIC_GROUP)
        except RuntimeError as exc:
            log.warning("streamad's counters are off: %s", exc)
            group = None
        self._counters = {name: group.counter(name) for name in names} if group else {}
        self._touched = False

    def touch(self) -> None:
        """Make every counter visible at its count. PyFlink reports a counter only once it
        has moved within a bundle (not in ``open()``): all start at the first record, so a 0
        says nothing happened yet, where a missing counter would look like a fault."""
        if not self._touched:
            for counter in self._counters.values():
                counter.inc(0)
            self._touched = True

    def add(self, name: str, n: int = 1) -> None:
        if self._counters:
            self.touch()
            self._counters[name].inc(n)
