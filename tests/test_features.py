"""Window features: the offline aggregation agrees with a brute-force definition."""

import numpy as np
import pandas as pd
import pytest

from models.features import (STATISTICS, aggregate_columns, feature_names,
                             features_from_aggregates, window_aggregates)


def random_events(seed=0, keys=("a", "b"), n=300):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(0, 3_600_000, size=n))
    events = pd.DataFrame({"key": rng.choice(keys, size=n), "t": times,
                           "x": rng.normal(size=n), "y": rng.uniform(size=n)})
    # Shuffle a little so that arrival order is not time order.
    order = np.arange(n)
    order[10:20] = order[10:20][::-1]
    return events.iloc[order].reset_index(drop=True)


def brute_force(events, size_ms, slide_ms):
    rows = []
    starts = range(-size_ms, int(events.t.max()) + slide_ms, slide_ms)
    for key, group in events.groupby("key"):
        for start in starts:
            inside = group[(group.t >= start) & (group.t < start + size_ms)]
            if inside.empty:
                continue
            row = {"key": key, "window_start_ms": start, "event_count": len(inside)}
            for m in ("x", "y"):
                row[f"{m}__mean"] = inside[m].mean()
                row[f"{m}__std"] = inside[m].std(ddof=0)
                row[f"{m}__min"] = inside[m].min()
                row[f"{m}__max"] = inside[m].max()
                row[f"{m}__range"] = inside[m].max() - inside[m].min()
                # the values at the earliest and latest event times (ties: arrival order)
                by_time = inside.sort_values("t", kind="stable")[m]
                row[f"{m}__first"], row[f"{m}__last"] = by_time.iloc[0], by_time.iloc[-1]
                row[f"{m}__delta"] = by_time.iloc[-1] - by_time.iloc[0]
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["key", "window_start_ms"]).reset_index(drop=True)


@pytest.mark.parametrize("size_ms, slide_ms", [(600_000, 60_000), (300_000, 300_000),
                                               (600_000, 300_000)])
def test_offline_window_features_match_brute_force(size_ms, slide_ms):
    events = random_events()
    stats = list(STATISTICS)
    aggregates = window_aggregates(events, "key", "t", ["x", "y"], size_ms, slide_ms)
    features = features_from_aggregates(aggregates, ["x", "y"], stats)
    got = pd.concat([aggregates[["key", "window_start_ms"]], features], axis=1)
    expected = brute_force(events, size_ms, slide_ms)
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(got[expected.columns].reset_index(drop=True), expected,
                                  check_dtype=False, rtol=1e-9, atol=1e-12)


def test_window_end_is_start_plus_size():
    aggregates = window_aggregates(random_events(), "key", "t", ["x"], 600_000, 60_000)
    assert (aggregates.window_end_ms - aggregates.window_start_ms == 600_000).all()


def test_constant_metric_has_exactly_zero_std():
    aggregates = pd.DataFrame({"event_count": [10.0], "c__sum": [0.1 * 10],
                               "c__sumsq": [0.1 * 0.1 * 10], "c__min": [0.1], "c__max": [0.1],
                               "c__first": [0.1], "c__last": [0.1]})
    features = features_from_aggregates(aggregates, ["c"], ["std"])
    assert features["c__std"].iloc[0] == 0.0


def test_feature_and_aggregate_names_follow_metric_order():
    assert feature_names(["b", "a"], ["max"], include_count=False) == ["b__max", "a__max"]
    assert aggregate_columns(["b"]) == ["event_count", "b__sum", "b__sumsq", "b__min",
                                        "b__max", "b__first", "b__last"]


def test_empty_events_give_no_windows():
    events = pd.DataFrame({"key": [], "t": [], "x": []})
    assert window_aggregates(events, "key", "t", ["x"], 60_000, 60_000).empty
