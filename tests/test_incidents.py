"""The alert policy: anomalous windows -> incidents, one alert each."""

import dataclasses

import pytest

from models.incidents import IncidentPolicy, IncidentTracker, incidents_of


def run(flags, policy=IncidentPolicy(open_after=2, close_after=3)):
    windows = [(t, bool(f), float(t), 0.5 + t / 100, [f"m{t}"]) for t, f in enumerate(flags)]
    return incidents_of("k", windows, policy)


def test_a_lone_anomalous_window_opens_nothing():
    assert run([0, 1, 0, 0, 1, 0]) == []


def test_one_long_problem_is_one_incident_with_its_peak():
    (incident,) = run([0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    # A one-window dip does not end it; three normal windows do.
    assert (incident.start, incident.opened_at, incident.end) == (1, 2, 7)
    assert incident.windows == 6
    assert incident.peak_score == 7.0 and incident.peak_details == ["m7"]


def test_after_recovery_a_new_problem_is_a_new_incident():
    found = run([1, 1, 0, 0, 0, 1, 1])
    assert [(i.start, i.end) for i in found] == [(0, 1), (5, None)]


def test_a_keys_first_partial_windows_open_nothing():
    policy = IncidentPolicy(open_after=2, close_after=3, warmup=2)
    # The first two windows began before the key's first event; the third is full.
    assert run([1, 1, 0, 0], policy) == []
    (incident,) = run([1, 1, 1, 1, 0, 0, 0], policy)
    assert (incident.start, incident.opened_at, incident.windows) == (2, 3, 2)


def test_warmup_follows_the_window_shape():
    from streamad.config import load_config
    config = load_config()
    hopping = dataclasses.replace(config.window, size_s=600, slide_s=300)
    tumbling = dataclasses.replace(config.window, kind="tumbling", size_s=600)
    uneven = dataclasses.replace(config.window, size_s=600, slide_s=240)
    assert [config.alerts.policy(w).warmup for w in (hopping, tumbling, uneven)] == [2, 1, 3]


def test_tracker_state_round_trips_through_plain_data():
    policy = IncidentPolicy(open_after=2, close_after=2, warmup=1)
    straight = IncidentTracker("k", policy)
    resumed_state = None
    events_straight, events_resumed = [], []
    def snapshot(event):  # as emitted, before the tracker goes on
        return event and (event[0], event[1].to_dict())

    for t, flag in enumerate([1, 1, 1, 1, 0, 0, 1, 1, 0, 0]):
        events_straight.append(snapshot(straight.update(t, bool(flag), t, 0.5)))
        # A fresh tracker per window, from the previous one's state: as in Flink state.
        resumed = IncidentTracker.from_state("k", policy, resumed_state)
        events_resumed.append(snapshot(resumed.update(t, bool(flag), t, 0.5)))
        resumed_state = resumed.state()
    assert events_straight == events_resumed
    assert [e[0] for e in events_straight if e] == ["open", "end", "open", "end"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_policy_rejects_impossible_counts(bad):
    with pytest.raises(ValueError, match="open_after"):
        IncidentPolicy(open_after=bad)
