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

from models.artifact import ModelArtifact, load_artifact
from models.features import aggregate_columns, feature_names, features_from_aggregates
from streamad.events import validate_events


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

    def eval(self, payloads: pd.Series, time_ok: pd.Series) -> pd.DataFrame:
        return validate_events(payloads, time_ok.fillna(False), self.key_field, self.time_field,
                               self.metric_fields, self.time_format)


def score_result_type(features: Sequence[str]):
    return DataTypes.ROW([DataTypes.FIELD("score", DataTypes.DOUBLE()),
                          DataTypes.FIELD("is_anomaly", DataTypes.BOOLEAN()),
                          DataTypes.FIELD("threshold", DataTypes.DOUBLE()),
                          DataTypes.FIELD("model_version", DataTypes.STRING())]
                         + [DataTypes.FIELD(f, DataTypes.DOUBLE()) for f in features])


class ScoreWindows(ScalarFunction):
    """Window aggregates -> ROW(score, is_anomaly, threshold, model_version, features...).

    The score is higher for more anomalous windows; is_anomaly is score > threshold, the
    threshold stored in the model artifact.
    """

    def __init__(self, artifact_dir: str, metric_fields: Sequence[str],
                 statistics: Sequence[str], include_count: bool):
        self.artifact_dir = artifact_dir
        self.metric_fields = list(metric_fields)
        self.statistics = list(statistics)
        self.include_count = include_count
        self._artifact: ModelArtifact | None = None

    def open(self, function_context: FunctionContext) -> None:
        self._artifact = load_artifact(
            self.artifact_dir,
            expected_features=feature_names(self.metric_fields, self.statistics,
                                            self.include_count))

    def eval(self, *aggregate_series: pd.Series) -> pd.DataFrame:
        aggregates = pd.concat(aggregate_series, axis=1, keys=aggregate_columns(self.metric_fields))
        features = features_from_aggregates(aggregates, self.metric_fields, self.statistics,
                                            self.include_count)
        artifact = self._artifact
        scores = artifact.scorer.score_samples(features.to_numpy())
        result = pd.DataFrame({
            "score": scores,
            "is_anomaly": scores > artifact.threshold,
            "threshold": np.full(len(scores), artifact.threshold),
            "model_version": artifact.model_version,
        }, index=features.index)
        return pd.concat([result, features], axis=1)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_artifact"] = None  # loaded in open(), on the worker
        return state
