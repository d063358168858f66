"""Event validation: every kind of bad event gets one clear reason; good ones parse."""

import json
import math

import pytest

from streamad.events import (encode_event, format_time, parse_time_ms, validate_event,
                             validate_events)

METRICS = ["cpu", "mem"]


def check(payload, time_ok=True):
    return validate_event(payload, "host", "ts", METRICS, time_ok=time_ok)


def test_good_event_parses_to_key_and_metrics():
    assert check('{"host": "h1", "ts": "2024-01-01T00:00:00Z", "cpu": 1, "mem": 0.5}') == \
        (None, "h1", [1.0, 0.5])


def test_integer_keys_are_accepted_as_text():
    assert check('{"host": 7, "ts": 1, "cpu": 1, "mem": 2}')[1] == "7"


@pytest.mark.parametrize("payload, time_ok, reason", [
    (None, True, "empty message (no value)"),
    (b"\xff\xfe", True, "not UTF-8 text"),
    ("{not json", True, "not valid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", True, "not a JSON object (got a JSON array)"),
    ('{"ts": 1, "cpu": 1, "mem": 1}', True, "missing key field 'host'"),
    ('{"host": true, "ts": 1, "cpu": 1, "mem": 1}', True,
     "key field 'host' must be a non-empty string or an integer, got boolean true"),
    ('{"host": "h", "cpu": 1, "mem": 1}', True, "missing time field 'ts'"),
    ('{"host": "h", "ts": "yesterday", "cpu": 1, "mem": 1}', False,
     "time field 'ts' is the string 'yesterday', expected an ISO 8601 UTC time"),
    ('{"host": "h", "ts": 1, "cpu": 1}', True, "missing metric field 'mem'"),
    ('{"host": "h", "ts": 1, "cpu": "high", "mem": 1}', True,
     "field 'cpu' must be a number, got the string 'high'"),
    ('{"host": "h", "ts": 1, "cpu": null, "mem": 1}', True, "field 'cpu' must be a number, got null"),
    ('{"host": "h", "ts": 1, "cpu": [1], "mem": 1}', True,
     "field 'cpu' must be a number, got a JSON array [1]"),
    ('{"host": "h", "ts": 1, "cpu": NaN, "mem": 1}', True,
     "field 'cpu' must be a finite number, got nan"),
    ('{"host": "h", "ts": 1, "cpu": 1, "mem": 1e999}', True,
     "field 'mem' must be a finite number, got inf"),
    # Flink cannot read the time of a payload with NaN (not JSON): name the NaN, not the time.
    ('{"host": "h", "ts": "2024-01-01T00:00:00Z", "cpu": NaN, "mem": 1}', False,
     "field 'cpu' must be a finite number, got nan"),
])
def test_bad_events_are_named_precisely(payload, time_ok, reason):
    got, _, values = check(payload, time_ok)
    assert got is not None and got.startswith(reason), got
    assert all(math.isnan(v) for v in values)


def test_vectorized_validation_keeps_row_order():
    frame = validate_events(['{"host": "a", "ts": 1, "cpu": 1, "mem": 2}', "oops"],
                            [True, True], "host", "ts", METRICS)
    assert frame["reason"].isna().tolist() == [True, False]
    assert frame["event_key"].tolist() == ["a", None]
    assert frame["cpu"].iloc[0] == 1.0 and math.isnan(frame["cpu"].iloc[1])


@pytest.mark.parametrize("time_format, value, expected", [
    ("iso8601", "2024-01-01T00:00:00Z", 1704067200000),
    ("iso8601", "2024-01-01T00:00:00.250Z", 1704067200250),
    ("iso8601", "2024-01-01T00:00:00+02:00", None),
    ("iso8601", "2024-01-01 00:00:00", None),
    ("iso8601", "2024-13-01T00:00:00Z", None),
    ("epoch_ms", 1704067200250, 1704067200250),
    ("epoch_ms", "1704067200250", 1704067200250),
    ("epoch_ms", 1.5, None),
    ("epoch_s", 1704067200, 1704067200000),
])
def test_time_parsing(time_format, value, expected):
    assert parse_time_ms(value, time_format) == expected


@pytest.mark.parametrize("time_format", ["iso8601", "epoch_ms", "epoch_s"])
def test_encoded_events_validate_and_round_trip(time_format):
    time_ms = 1704067260000
    payload = encode_event("m1", time_ms, {"cpu": 0.25, "mem": 1e-7}, "host", "ts", time_format)
    event = json.loads(payload)
    assert parse_time_ms(event["ts"], time_format) == time_ms
    assert check(payload) == (None, "m1", [0.25, 1e-7])


def test_format_time_keeps_milliseconds():
    assert format_time(1704067200250, "iso8601") == "2024-01-01T00:00:00.250Z"
