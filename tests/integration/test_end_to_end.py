"""Events in -> the job (local mini-cluster, bounded) -> InfluxDB, alerts and dead letters.

What the job writes must equal, window for window and key for key, what the scoring core
computes offline on the same events; bad events must reach the dead-letter topic with the
reason the core gives them, while the good ones are still scored.
"""

from __future__ import annotations

import random
from collections import Counter


from models.data import load_events_csv
from streamad import jobs_client
from streamad.events import validate_event
from streamad.replay import encoded, ordered_events

from .helpers import (BAD_EVENTS, assert_alerts_match, assert_points_match,
                      expected_alerts, expected_windows, influx_points, produce,
                      read_json_topic)



def test_job_output_equals_offline_scoring_and_bad_events_are_dead_lettered(
        isolated, smd_slices):
    config, config_path = isolated
    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    # Interleave the malformed events with the good ones, as a broken producer would.
    rng = random.Random(7)
    for bad in BAD_EVENTS:
        messages.insert(rng.randrange(len(messages)), (b"machine-1-6", bad))
    produce(config, messages)

    result = jobs_client.run_local(config_path, bounded=True)
    assert result.returncode == 0, result.stderr[-4000:]

    expected = expected_windows(config, load_events_csv(smd_slices["test"], config.schema))
    assert expected["is_anomaly"].sum() > 0, "test data should hold some anomalous windows"

    # 1. every window's score, grade and features in InfluxDB, and nothing else
    points = influx_points(config)
    assert len(points) == len(expected)
    assert_points_match(points, expected, config.schema.key_field)

    # 2. one alert per incident opened and one per incident ended, and one per metric that
    #    starts and stops drifting, as the policies give offline, read with read_committed
    alerts = read_json_topic(config, config.kafka.alerts_topic)
    want = expected_alerts(config, expected)
    assert {a["alert"] for a in want} == {"open", "end", "drift", "drift_end"}, \
        "the slices should open and end incidents, and drift"
    incident_alerts = [a for a in want if a["alert"] in ("open", "end")]
    assert len(incident_alerts) < expected["is_anomaly"].sum(), \
        "incidents should group anomalous windows"
    assert_alerts_match(alerts, want)
    assert all(a["model_version"].startswith(config.model.kind + "-") for a in alerts)

    # 3. each bad event once in the dead-letter topic, with the reason the core gives it
    dead = read_json_topic(config, config.kafka.dead_letter_topic)
    assert Counter(d["payload"] for d in dead) == Counter(b.decode() for b in BAD_EVENTS)
    schema = config.schema
    for letter in dead:
        time_ok = not any(bad in letter["payload"] for bad in ("+02:00", "17 Jan", "NaN"))
        reason, _, _ = validate_event(letter["payload"], schema.key_field, schema.time_field,
                                      schema.metric_fields, time_ok=time_ok)
        assert letter["reason"] == reason
        assert letter["source_topic"] == config.kafka.events_topic
        assert letter["source_offset"] >= 0
