"""Vectorized (pandas) PyFlink UDFs: thin adapters from Flink batches to the scoring core.

Each class keeps only plain configuration in ``__init__`` (PyFlink pickles the object into
the job), loads what it needs once per worker in ``open()``, and handles a whole Arrow batch
per ``eval`` call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction

from models.artifact import ArtifactError, ModelArtifact, load_artifact
from models.detector import driver_columns, joined_metrics
from models.features import (aggregate_columns, feature_names, features_from_aggregates,
                             recent_level_names)
from streamad.events import validate_events
from udfs.batches import frame_of
from udfs.metrics import Counters


def parse_result_type(metric_fields: Sequence[str]):
    return DataTypes.ROW([DataTypes.FIELD("reason", DataTypes.STRING()),
                          DataTypes.FIELD("event_key", DataTypes.STRING())]
                         + [DataTypes.FIELD(m, DataTypes.DOUBLE()) for m in metric_fields])


class ParseEvents(ScalarFunction):
    """(payload, time_ok) -> ROW(reason, event_key, metrics...): reason is NULL for good events."""

    def __init__(self, key_field: str, time_field: str, time_format: str,
                 metric_fields: Sequence[str]):
        self.key_field = key_field
        self.time_field = time_field
        self.time_format = time_format
        self.metric_fields = list(metric_fields)
        self._counted = None

    def open(self, function_context: FunctionContext) -> None:
        self._counted = Counters(function_context.get_metric_group, "events_accepted",
                                 "events_malformed")

    def eval(self, payloads: pd.Series, time_ok: pd.Series) -> pd.DataFrame:
        checked = validate_events(payloads, time_ok.fillna(False), self.key_field,
                                  self.time_field, self.metric_fields, self.time_format)
        malformed = int(checked["reason"].notna().sum())
        self._counted.add("events_malformed", malformed)
        self._counted.add("events_accepted", len(checked) - malformed)
        return checked


def score_result_type(features: Sequence[str], explain_top: int):
    drivers = []
    for metric, share, deviation in driver_columns(explain_top):
        drivers += [DataTypes.FIELD(metric, DataTypes.STRING()),
                    DataTypes.FIELD(share, DataTypes.DOUBLE()),
                    DataTypes.FIELD(deviation, DataTypes.DOUBLE())]
    return DataTypes.ROW([DataTypes.FIELD("score", DataTypes.DOUBLE()),
                          DataTypes.FIELD("grade", DataTypes.DOUBLE()),
                          DataTypes.FIELD("is_anomaly", DataTypes.BOOLEAN()),
                          DataTypes.FIELD("threshold", DataTypes.DOUBLE()),
                          DataTypes.FIELD("model_version", DataTypes.STRING()),
                          DataTypes.FIELD("out_of_range", DataTypes.STRING())]
                         + drivers
                         + [DataTypes.FIELD(f, DataTypes.DOUBLE()) for f in features])


# The driver columns of a rank that a window has no driver for.
_NO_DRIVER = (None, np.nan, np.nan)


def flatten_scores(scored: pd.DataFrame, explain_top: int) -> pd.DataFrame:
    """The detector's drivers and out-of-range lists as the flat columns Flink rows carry."""
    flat = {column: scored[column].to_numpy()
            for column in ("score", "grade", "is_anomaly", "threshold")}
    flat["out_of_range"] = [joined_metrics(metrics) for metrics in scored["out_of_range"]]
    drivers = scored["drivers"].tolist()
    # Built as one frame, not column by column: this runs on every batch the job scores.
    for rank, (metric, share, deviation) in enumerate(driver_columns(explain_top)):
        at_rank = [d[rank] if len(d) > rank else _NO_DRIVER for d in drivers]
        flat[metric] = [driver[0] for driver in at_rank]
        flat[share] = np.array([driver[1] for driver in at_rank], dtype=np.float64)
        flat[deviation] = np.array([driver[2] for driver in at_rank], dtype=np.float64)
    return pd.DataFrame(flat, index=scored.index)


class ScoreWindows(ScalarFunction):
    """(key, window aggregates) -> ROW(score, grade, is_anomaly, threshold, model_version,
    out_of_range, drivers, features...).

    The artifact's `models.detector.Detector` does all the work: the key's own baseline, the
    score (higher = more anomalous), the grade in [0, 1], the key's threshold and the metrics
    that drove the score. With `model_version`, `artifact_dir` must hold that model (a pinned
    copy, `models.artifact.pinned_artifact`, as the submitted job has).
    """

    def __init__(self, artifact_dir: str, metric_fields: Sequence[str],
                 statistics: Sequence[str], include_count: bool, explain_top: int,
                 recent_level_windows: int = 0, model_version: str | None = None):
        self.artifact_dir = artifact_dir
        self.model_version = model_version
        self.metric_fields = list(metric_fields)
        self.statistics = list(statistics)
        self.include_count = include_count
        self.explain_top = explain_top
        # With it, each metric's recent level follows the aggregates (jobs/sql.py).
        self.recent_level_windows = recent_level_windows
        self._artifact: ModelArtifact | None = None
        self._counted = None

    def open(self, function_context: FunctionContext) -> None:
        self._artifact = load_artifact(
            self.artifact_dir,
            expected_features=feature_names(self.metric_fields, self.statistics,
                                            self.include_count),
            expected_version=self.model_version)
        trained_with = self._artifact.scorer.settings.explain_recent_windows
        if trained_with != self.recent_level_windows:
            raise ArtifactError(
                f"the model at {self.artifact_dir} ({self._artifact.model_version}) weighs "
                f"each metric's recent level over {trained_with} windows, and the job was "
                f"built to compute it over {self.recent_level_windows}: the job was not built "
                f"for this model (an unpinned job whose model was replaced). Submit the job "
                f"again.")
        self._counted = Counters(function_context.get_metric_group, "windows_scored",
                                 "windows_anomalous", "windows_out_of_range")

    def eval(self, keys: pd.Series, *columns: pd.Series) -> pd.DataFrame:
        names = aggregate_columns(self.metric_fields)
        aggregates = frame_of(names, columns[:len(names)])
        features = features_from_aggregates(aggregates, self.metric_fields, self.statistics,
                                            self.include_count)
        windows = features
        if self.recent_level_windows:
            windows = features.join(frame_of(recent_level_names(self.metric_fields),
                                             columns[len(names):]))
        scored = self._artifact.scorer.score(windows, keys.to_numpy())
        self._counted.add("windows_scored", len(scored))
        self._counted.add("windows_anomalous", int(scored["is_anomaly"].sum()))
        self._counted.add("windows_out_of_range", sum(map(bool, scored["out_of_range"])))
        result = flatten_scores(scored, self.explain_top)
        result.insert(4, "model_version", self._artifact.model_version)
        return pd.concat([result, features], axis=1)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_artifact"] = None  # loaded in open(), on the worker
        return state
