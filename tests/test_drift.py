"""Drift: a metric out of its training range for long, told apart from passing spikes."""

import pytest

from models.drift import DriftPolicy, DriftTracker
from streamad.config import ConfigError, config_from_dict, load_config


def feed(tracker, windows, start=0):
    events = []
    for time, out in enumerate(windows, start):
        events += [(time, kind, run.metric, run.since, run.windows)
                   for kind, run in tracker.update(time, out)]
    return events


def test_spikes_shorter_than_the_policy_never_drift():
    tracker = DriftTracker("a", DriftPolicy(after=5, clear_after=3))
    spikes = ([["m1"]] * 4 + [[]] * 3) * 10  # runs of 4, each ended by 3 in-range windows
    assert feed(tracker, spikes) == []
    assert tracker.runs == {}


def test_a_metric_hovering_at_the_cap_drifts_once_and_ends_once():
    tracker = DriftTracker("a", DriftPolicy(after=5, clear_after=3))
    # out of range with gaps of 1-2 windows (shorter than clear_after): one run
    hovering = [["m1"], [], ["m1"], ["m1"], [], [], ["m1"], ["m1"], ["m1"], []]
    events = feed(tracker, hovering + [[]] * 3)
    assert events == [(7, "drift", "m1", 0, 5), (11, "drift_end", "m1", 0, 6)]


def test_each_metric_has_its_own_run():
    tracker = DriftTracker("a", DriftPolicy(after=3, clear_after=2))
    events = feed(tracker, [["m2"], ["m1", "m2"], ["m1", "m2"], ["m1"], [], []])
    assert [(t, kind, m) for t, kind, m, _, _ in events] == [
        (2, "drift", "m2"), (3, "drift", "m1"), (4, "drift_end", "m2"), (5, "drift_end", "m1")]


def test_restored_state_gives_the_same_events_as_an_uninterrupted_run():
    """What the job does after a restart from a checkpoint."""
    policy = DriftPolicy(after=4, clear_after=2)
    windows = [["m1"], ["m1", "m3"], [], ["m1"], ["m1"], ["m3"], [], [], ["m1"]]
    whole = feed(DriftTracker("a", policy), windows)
    first = DriftTracker("a", policy)
    events = feed(first, windows[:4])
    restored = DriftTracker.from_state("a", policy, first.state())
    events += feed(restored, windows[4:], start=4)
    assert events == whole and whole  # and it does drift
    assert restored.drifting() == []


def test_drift_policy_and_configuration_say_what_is_wrong():
    with pytest.raises(ValueError, match="drift after must be a whole number"):
        DriftPolicy(after=0)
    raw = load_config().to_dict()
    raw["alerts"]["drift_after_windows"] = -3
    with pytest.raises(ConfigError, match="alerts.drift_after_windows"):
        config_from_dict(raw)
    assert load_config().alerts.drift_policy() == DriftPolicy(288, 12)
