"""Event validation and encoding: what a good event is, and why a bad one is rejected.

Events are JSON objects with a key field, a time field and numeric metric fields (see the
``schema`` section of the configuration). The job parses event *time* in Flink SQL (it must,
to put watermarks on the source) and everything else here, in plain Python that is unit
tested without Flink. A rejected event keeps its raw payload and gets one reason, the first
problem found, worded so that the producer knows what to fix.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# What the job's SQL accepts for time_format iso8601: UTC with a literal Z, optional millis.
ISO8601_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
TIME_FORMAT_HELP = {
    "iso8601": "an ISO 8601 UTC time like 2024-01-01T00:00:00Z or 2024-01-01T00:00:00.000Z",
    "epoch_ms": "whole milliseconds since 1970-01-01 UTC, like 1704067200000",
    "epoch_s": "whole seconds since 1970-01-01 UTC, like 1704067200",
}
KEY_COLUMN = "event_key"
REASON_COLUMN = "reason"


def parse_time_ms(value, time_format: str) -> int | None:
    """Event time in epoch milliseconds, or None where the job's SQL would not parse it.

    >>> parse_time_ms("2024-01-01T00:01:00Z", "iso8601")
    1704067260000
    >>> parse_time_ms("2024-01-01T00:01:00+02:00", "iso8601") is None
    True
    """
    if time_format == "iso8601":
        if not isinstance(value, str) or not ISO8601_UTC.match(value):
            return None
        try:
            parsed = datetime.strptime(value.replace("Z", "+0000"),
                                       "%Y-%m-%dT%H:%M:%S.%f%z" if "." in value
                                       else "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
        return int(round(parsed.timestamp() * 1000))
    text = value if isinstance(value, str) else json.dumps(value)
    if not re.fullmatch(r"-?\d+", text or ""):
        return None
    number = int(text)
    return number if time_format == "epoch_ms" else number * 1000


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON; keep them so that the metric
    # check below can name the field that had one.
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def validate_event(payload: str | bytes | None, key_field: str, time_field: str,
                   metric_fields: Sequence[str], time_ok: bool = True,
                   time_format: str = "iso8601") -> tuple[str | None, str | None, list[float]]:
    """Check one raw event. Returns (reason or None, key, metric values).

    `time_ok` says whether the job's SQL could parse the time field (it is the authority on
    time, because it sets the watermarks).

    >>> validate_event('{"k": "a", "t": "x", "m": 1}', "k", "t", ["m"])
    (None, 'a', [1.0])
    >>> validate_event('{"k": "a", "t": "x", "m": "high"}', "k", "t", ["m"])[0]
    "field 'm' must be a number, got the string 'high'"
    """
    nan_row = [math.nan] * len(metric_fields)
    if payload is None:
        return "empty message (no value)", None, nan_row
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8 text", None, nan_row
    try:
        event = json.loads(payload, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        return f"not valid JSON: {exc.msg} at character {exc.pos}" if isinstance(
            exc, json.JSONDecodeError) else "not valid JSON: nested too deeply", None, nan_row
    if not isinstance(event, dict):
        return f"not a JSON object (got a JSON {_json_type(event)})", None, nan_row
    key = event.get(key_field)
    if key is None:
        return f"missing key field '{key_field}'", None, nan_row
    if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
        return (f"key field '{key_field}' must be a non-empty string or an integer, "
                f"got {_describe(key)}"), None, nan_row
    key = str(key)
    if time_field not in event:
        return f"missing time field '{time_field}'", key, nan_row
    if not time_ok:
        # NaN and Infinity are not JSON: where one stands, the job's SQL could not read the
        # event at all, time included, so that is the problem to report.
        for name, value in event.items():
            if isinstance(value, float) and not math.isfinite(value):
                return f"field '{name}' must be a finite number, got {value}", key, nan_row
        return (f"time field '{time_field}' is {_describe(event[time_field])}, expected "
                f"{TIME_FORMAT_HELP[time_format]}"), key, nan_row
    values = []
    for name in metric_fields:
        if name not in event:
            return f"missing metric field '{name}'", key, nan_row
        value = event[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"field '{name}' must be a number, got {_describe(value)}", key, nan_row
        value = float(value)
        if not math.isfinite(value):
            return f"field '{name}' must be a finite number, got {value}", key, nan_row
        values.append(value)
    return None, key, values


def validate_events(payloads: Iterable, time_ok: Iterable[bool], key_field: str,
                    time_field: str, metric_fields: Sequence[str],
                    time_format: str = "iso8601") -> pd.DataFrame:
    """Vectorized `validate_event`: one row per payload with reason, key and metrics."""
    reasons, keys, rows = [], [], []
    for payload, ok in zip(payloads, time_ok):
        reason, key, values = validate_event(payload, key_field, time_field, metric_fields,
                                             bool(ok), time_format)
        reasons.append(reason)
        keys.append(key)
        rows.append(values)
    frame = pd.DataFrame(np.array(rows, dtype=np.float64).reshape(len(rows), len(metric_fields)),
                         columns=list(metric_fields))
    frame.insert(0, KEY_COLUMN, pd.Series(keys, dtype=object))
    frame.insert(0, REASON_COLUMN, pd.Series(reasons, dtype=object))
    return frame


def _json_type(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _describe(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    if isinstance(value, str):
        return f"the string '{value[:37] + '...' if len(value) > 40 else value}'"
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} {text}"
    return "null" if value is None else f"{_json_type(value)} {text}"


def format_time(time_ms: int, time_format: str) -> str | int:
    """Encode epoch milliseconds as the schema's time field."""
    if time_format == "epoch_ms":
        return int(time_ms)
    if time_format == "epoch_s":
        return int(time_ms // 1000)
    moment = datetime.fromtimestamp(time_ms / 1000, tz=timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{time_ms % 1000:03d}Z" if time_ms % 1000 else "Z")


def encode_event(key: str, time_ms: int, metrics: Mapping[str, float], key_field: str,
                 time_field: str, time_format: str) -> bytes:
    """The JSON bytes of one event, as the replayer produces them."""
    event = {key_field: key, time_field: format_time(time_ms, time_format)}
    event.update({name: float(value) for name, value in metrics.items()})
    return json.dumps(event, separators=(",", ":")).encode()
