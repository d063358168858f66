"""Window features: one definition for the streaming job and the offline path.

A window's features are computed in two steps so that Flink SQL can do the heavy part:

1. *Aggregates* (sufficient statistics, all mergeable so Flink can share slices between
   hopping windows) per key and window: the event count and, per metric, sum, sum of
   squares, min, max, first and last. The job computes them in Flink SQL (jobs/sql.py);
   `window_aggregates` computes the same ones offline with pandas.
2. *Features* from aggregates (`features_from_aggregates`), per metric:

   - ``mean``, ``std`` (population): level and noise;
   - ``min``, ``max``, ``range`` (max - min): the extremes and the spread;
   - ``last``: the newest value, so a window reacts to what just happened;
   - ``first`` and ``delta`` (last - first): the change across the window, its trend;

   and the event count. Both paths call this same function.

"first" and "last" are the values at the window's earliest and latest event times, whatever
order events arrived in. Should one key send two events with the same time, which of their
values is "first" or "last" is not specified.

Beside the features, each window can carry every metric's *recent level* (`recent_levels`):
its window mean averaged over the key's last windows before this one (as many as
``model.explain_recent_windows``). The explanations weigh how rare a metric's move from it
is (models/detector.py); the scorers do not see it. The job computes it with a Flink SQL
OVER aggregation over each key's windows in event time (jobs/sql.py), offline it is a
rolling sum over each key's windows in time order, and both take the same steps: the sum of
the window means over the window and the ones before it, less the window's own, divided by
the number of windows before it (a key's first window, with none, takes its own mean).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

AGGREGATES = ("sum", "sumsq", "min", "max", "first", "last")
# Every statistic a feature can be, in the canonical order.
STATISTICS = ("mean", "std", "min", "max", "range", "first", "last", "delta")
COUNT_COLUMN = "event_count"
# Statistics of a window's spread rather than its level: any step inside the window inflates
# them, whichever metric is at fault, so explanations by rarity leave them out of a metric's
# ranking (on SMD's interpretation labels, each of them lowers HitRate when kept).
SPREAD_STATISTICS = ("std", "range")
# Variance below this share of the metric's mean square is floating-point noise of
# E[x^2] - E[x]^2 (a constant metric): report exactly 0 so that both paths agree.
_RELATIVE_VARIANCE_NOISE = 1e-10
# The suffix of the recent levels' columns: <metric>__recent_level.
RECENT_LEVEL = "recent_level"


def aggregate_name(metric: str, aggregate: str) -> str:
    return f"{metric}__{aggregate}"


def aggregate_columns(metrics: Sequence[str]) -> list[str]:
    """Names of the aggregate columns, in the order the job passes them to the scorer."""
    return [COUNT_COLUMN] + [aggregate_name(m, a) for m in metrics for a in AGGREGATES]


def feature_names(metrics: Sequence[str], statistics: Sequence[str],
                  include_count: bool = True) -> list[str]:
    """Feature names in model order.

    >>> feature_names(["cpu", "mem"], ["mean", "max"])
    ['event_count', 'cpu__mean', 'cpu__max', 'mem__mean', 'mem__max']
    """
    names = [COUNT_COLUMN] if include_count else []
    return names + [f"{m}__{s}" for m in metrics for s in statistics]


def recent_level_names(metrics: Sequence[str]) -> list[str]:
    """The recent levels' column names.

    >>> recent_level_names(["cpu"])
    ['cpu__recent_level']
    """
    return [f"{m}__{RECENT_LEVEL}" for m in metrics]


def recent_levels(aggregates: pd.DataFrame, key: str, metrics: Sequence[str], windows: int,
                  streams: np.ndarray | None = None) -> pd.DataFrame:
    """Each window's recent level of every metric (module docstring): the mean of the
    metric's window means over the key's `windows` windows before it, in window order.
    `streams` labels rows that are separate streams (a train and a test file), which do not
    look back into each other. Indexed like `aggregates`.

    >>> agg = pd.DataFrame({"k": ["a"] * 4, "window_start_ms": [0, 1, 2, 3],
    ...                     "event_count": [1.0, 1.0, 2.0, 1.0],
    ...                     "x__sum": [1.0, 3.0, 10.0, 8.0]})
    >>> recent_levels(agg, "k", ["x"], windows=2)["x__recent_level"].tolist()
    [1.0, 1.0, 2.0, 4.0]
    """
    count = aggregates[COUNT_COLUMN].to_numpy(dtype=np.float64)
    means = pd.DataFrame({name: aggregates[aggregate_name(m, "sum")].to_numpy(np.float64) / count
                          for m, name in zip(metrics, recent_level_names(metrics))},
                         index=aggregates.index)
    groups = [aggregates[key].to_numpy()]
    if streams is not None:
        groups.append(np.asarray(streams))
    order = np.lexsort((aggregates["window_start_ms"].to_numpy(), *groups))
    ordered = means.iloc[order]
    rolling = ordered.groupby([g[order] for g in groups], sort=False).rolling(
        windows + 1, min_periods=1)
    totals = rolling.sum().reset_index(level=list(range(len(groups))), drop=True)
    seen = rolling.count().reset_index(level=list(range(len(groups))), drop=True)
    totals, seen = totals.reindex(means.index), seen.reindex(means.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        before = (totals - means) / (seen - 1)
    return before.where(seen > 1, means)


def features_from_aggregates(aggregates: pd.DataFrame, metrics: Sequence[str],
                             statistics: Sequence[str], include_count: bool = True
                             ) -> pd.DataFrame:
    """Turn aggregate columns into the feature frame the model scores.

    >>> agg = pd.DataFrame({"event_count": [2], "x__sum": [4.0], "x__sumsq": [10.0],
    ...                     "x__min": [1.0], "x__max": [3.0], "x__first": [1.0],
    ...                     "x__last": [3.0]})
    >>> features_from_aggregates(agg, ["x"], ["mean", "std", "range", "delta"]).to_dict("records")
    [{'event_count': 2.0, 'x__mean': 2.0, 'x__std': 1.0, 'x__range': 2.0, 'x__delta': 2.0}]
    """
    count = aggregates[COUNT_COLUMN].to_numpy(dtype=np.float64)
    columns: dict[str, np.ndarray] = {}
    if include_count:
        columns[COUNT_COLUMN] = count
    with np.errstate(invalid="ignore", divide="ignore"):
        for metric in metrics:
            total = aggregates[aggregate_name(metric, "sum")].to_numpy(dtype=np.float64)
            mean = total / count
            for stat in statistics:
                if stat == "mean":
                    values = mean
                elif stat == "std":
                    mean_square = (aggregates[aggregate_name(metric, "sumsq")]
                                   .to_numpy(dtype=np.float64) / count)
                    variance = mean_square - mean * mean
                    noise = _RELATIVE_VARIANCE_NOISE * np.maximum(mean_square, 1e-300)
                    values = np.sqrt(np.where(variance > noise, variance, 0.0))
                elif stat == "range":
                    values = (aggregates[aggregate_name(metric, "max")].to_numpy(np.float64)
                              - aggregates[aggregate_name(metric, "min")].to_numpy(np.float64))
                elif stat == "delta":
                    values = (aggregates[aggregate_name(metric, "last")].to_numpy(np.float64)
                              - aggregates[aggregate_name(metric, "first")].to_numpy(np.float64))
                elif stat in AGGREGATES:  # min, max, first, last are aggregates already
                    values = aggregates[aggregate_name(metric, stat)].to_numpy(dtype=np.float64)
                else:
                    raise ValueError(f"unknown statistic {stat!r}; known: {', '.join(STATISTICS)}.")
                columns[f"{metric}__{stat}"] = values
    return pd.DataFrame(columns, index=aggregates.index)


def window_starts(event_time_ms: np.ndarray, size_ms: int, slide_ms: int) -> np.ndarray:
    """All window starts that contain each event, as an (events, size/slide) array.

    Windows are aligned to the epoch, as Flink's TUMBLE and HOP are: a window of size S and
    slide L starts at every multiple of L and holds [start, start + S).

    >>> window_starts(np.array([125_000]), size_ms=60_000, slide_ms=30_000).tolist()
    [[120000, 90000]]
    """
    newest = (event_time_ms // slide_ms) * slide_ms
    steps = np.arange(size_ms // slide_ms, dtype=np.int64) * slide_ms
    return newest[:, None] - steps[None, :]


def window_aggregates(events: pd.DataFrame, key: str, time_ms: str, metrics: Sequence[str],
                      size_ms: int, slide_ms: int) -> pd.DataFrame:
    """Offline twin of the job's window aggregation.

    `events` holds one row per valid event with the key, the event time in epoch
    milliseconds and the metrics. Returns one row per (key, window) that has events,
    with columns key, window_start_ms, window_end_ms and `aggregate_columns(metrics)`.
    """
    if events.empty:
        return pd.DataFrame(columns=[key, "window_start_ms", "window_end_ms",
                                     *aggregate_columns(metrics)])
    times = events[time_ms].to_numpy(dtype=np.int64)
    starts = window_starts(times, size_ms, slide_ms)
    per_window = size_ms // slide_ms
    values = events[list(metrics)].to_numpy(dtype=np.float64)
    long = pd.DataFrame(np.repeat(values, per_window, axis=0), columns=list(metrics))
    long.insert(0, "window_start_ms", starts.reshape(-1))
    long.insert(0, key, np.repeat(events[key].to_numpy(), per_window))
    long["_time"] = np.repeat(times, per_window)
    # Sorted by event time (stable, so equal times keep arrival order): "first" and "last"
    # are then the values at the earliest and latest event times, as in the job.
    long = long.sort_values("_time", kind="stable")
    metrics = list(metrics)
    squares = [f"_square_{i}" for i in range(len(metrics))]
    long[squares] = long[metrics].to_numpy() ** 2
    grouped = long.groupby([key, "window_start_ms"], sort=True)
    by_aggregate = {"sum": grouped[metrics].sum(),
                    "sumsq": grouped[squares].sum().set_axis(metrics, axis=1),
                    "min": grouped[metrics].min(), "max": grouped[metrics].max(),
                    "first": grouped[metrics].first(), "last": grouped[metrics].last()}
    parts = {COUNT_COLUMN: grouped.size()}
    for metric in metrics:
        for aggregate in AGGREGATES:
            parts[aggregate_name(metric, aggregate)] = by_aggregate[aggregate][metric]
    result = pd.DataFrame(parts).reset_index()
    result.insert(2, "window_end_ms", result["window_start_ms"] + size_ms)
    return result
