"""Writing window scores to InfluxDB from a pandas UDF.

Flink has no InfluxDB connector, and a PyFlink function has no checkpoint hook, so the
writer is a vectorized UDF whose result (points written) goes to a blackhole sink. Each
Arrow batch is one synchronous write. Before every checkpoint barrier Flink finishes the
Python bundle, so every window before a checkpoint is in InfluxDB before that checkpoint
completes; windows replayed after a failure are written again at the same timestamp (the
window end) with the same tags, which overwrites the same point: exactly one point per
(key, window) however often a window is retried.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Sequence

import numpy as np
import pandas as pd
from pyflink.table.udf import FunctionContext, ScalarFunction

from models.detector import split_metrics
from udfs.batches import frame_of
from udfs.metrics import Counters

log = logging.getLogger(__name__)

SCORE_FIELDS = ("score", "grade", "is_anomaly", "threshold", "out_of_range")


def escape_tag(value: str) -> str:
    """Escape a tag value for line protocol.

    >>> escape_tag("rack 1,a=b")
    'rack\\\\ 1\\\\,a\\\\=b'
    """
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_string_field(value: str) -> str:
    r"""Quote a string field value for line protocol.

    >>> print(escape_string_field('m06,"x"'))
    "m06,\"x\""
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_line_protocol(measurement: str, key_tag: str, keys: pd.Series, model_versions: pd.Series,
                     window_end_ms: np.ndarray, fields: pd.DataFrame) -> list[str]:
    """One line per window: tags key and model_version, timestamp the window end (ms).

    Non-finite numbers and empty strings are left out (line protocol has no NaN, and an
    absent field reads back as null). Integer columns are written as integers.

    >>> to_line_protocol("s", "host", pd.Series(["a"]), pd.Series(["v1"]), np.array([60000]),
    ...                  pd.DataFrame({"score": [0.5], "is_anomaly": [True], "n": [3.0],
    ...                                "c": [2], "why": ["m1"]}))
    ['s,host=a,model_version=v1 score=0.5,is_anomaly=true,n=3.0,c=2i,why="m1" 60000']
    """
    columns = []
    for name in fields.columns:
        values = fields[name].to_numpy()
        if values.dtype == bool:
            columns.append([f"{name}=true" if v else f"{name}=false" for v in values.tolist()])
        elif values.dtype == object:
            columns.append([f"{name}={escape_string_field(v)}" if v else ""
                            for v in values.tolist()])
        elif np.issubdtype(values.dtype, np.integer):
            columns.append([f"{name}={v}i" for v in values.tolist()])
        else:
            # repr gives the shortest text that reads back as the same float.
            columns.append([f"{name}={v!r}" if math.isfinite(v) else ""
                            for v in values.astype(np.float64).tolist()])
    rows = zip(*columns) if columns else ([] for _ in range(len(keys)))
    return [f"{measurement},{key_tag}={escape_tag(str(key))},"
            f"model_version={escape_tag(str(version))} "
            f"{','.join(field for field in fields_text if field)} {int(stamp)}"
            for key, version, stamp, fields_text in zip(keys, model_versions, window_end_ms, rows)]


class WriteScoresToInflux(ScalarFunction):
    """(key, window_end, model_version, score, is_anomaly, threshold, features...) -> points written."""

    def __init__(self, url: str, org: str, bucket: str, measurement: str, key_tag: str,
                 feature_names: Sequence[str], token_file: str | None, timeout_ms: int,
                 max_attempts: int = 5):
        self.url = url
        self.org = org
        self.bucket = bucket
        self.measurement = measurement
        self.key_tag = key_tag
        self.feature_names = list(feature_names)
        self.token_file = token_file  # the token itself is read on the worker, never pickled
        self.timeout_ms = timeout_ms
        self.max_attempts = max_attempts
        self._client = None
        self._write_api = None
        self._counted = None

    def open(self, function_context: FunctionContext) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        from streamad.config import InfluxDBConfig

        token = InfluxDBConfig(url=self.url, token_file=self.token_file).read_token()
        self._client = InfluxDBClient(url=self.url, token=token, org=self.org,
                                      timeout=self.timeout_ms, enable_gzip=True)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._counted = Counters(function_context.get_metric_group, "influxdb_points_written",
                                 "influxdb_write_retries")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def eval(self, keys: pd.Series, window_ends: pd.Series, model_versions: pd.Series,
             *values: pd.Series) -> pd.Series:
        fields = frame_of(list(SCORE_FIELDS) + self.feature_names, values)
        fields["is_anomaly"] = fields["is_anomaly"].astype(bool)
        # The metrics beyond the scaling cap (comma-separated, as in the alerts) and their
        # number: a drifting metric shows as a count that stays up for hours or days.
        out_of_range = fields.pop("out_of_range").fillna("").astype(str).to_numpy(object)
        fields.insert(4, "out_of_range", out_of_range)
        fields.insert(5, "out_of_range_count",
                      np.array([len(split_metrics(v)) for v in out_of_range], np.int64))
        end_ms = (pd.to_datetime(window_ends).astype("datetime64[ms]").astype(np.int64)
                  .to_numpy())
        lines = to_line_protocol(self.measurement, self.key_tag, keys, model_versions, end_ms,
                                 fields)
        self._write(lines)
        return pd.Series(np.ones(len(lines), dtype=np.int64))

    def _write(self, lines: list[str]) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        delay_s = 0.5
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._write_api.write(bucket=self.bucket, org=self.org, record=lines,
                                      write_precision="ms")
                self._counted.add("influxdb_points_written", len(lines))
                return
            except ApiException as exc:
                retriable = exc.status in (429, 500, 502, 503, 504)
                error = f"InfluxDB at {self.url} answered {exc.status}: {exc.body}"
            except (HTTPError, OSError) as exc:
                retriable = True
                error = f"InfluxDB at {self.url} could not be reached: {exc}"
            if not retriable or attempt == self.max_attempts:
                # Failing the task makes Flink restart from the last checkpoint and write these
                # windows again: nothing is lost, and rewriting a point overwrites it.
                raise RuntimeError(f"{error} (attempt {attempt} of {self.max_attempts}, "
                                   f"bucket {self.bucket!r})")
            log.warning("%s; retrying in %.1f s", error, delay_s)
            self._counted.add("influxdb_write_retries")
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 10)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = state["_write_api"] = None
        return state
