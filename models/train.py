"""Training: historical events -> the job's window features -> a `Detector` -> artifact.

Thresholds are set without labels, per key, from the key's training scores: see
models/threshold.py (``model.threshold_method``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models.artifact import (ArtifactError, ModelArtifact, load_artifact, save_artifact,
                             sha256_of)
from models.data import TIME_MS_COLUMN, load_events_csv
from models.features import (feature_names, features_from_aggregates, recent_levels,
                             window_aggregates)
from models.detector import Detector
from streamad.config import JobConfig

log = logging.getLogger(__name__)


def windows_for(events: pd.DataFrame, config: JobConfig) -> pd.DataFrame:
    """Window aggregates of `events` with the job's window configuration."""
    window = config.window
    return window_aggregates(events, config.schema.key_field, TIME_MS_COLUMN,
                             config.schema.metric_fields, size_ms=window.size_s * 1000,
                             slide_ms=window.effective_slide_s * 1000)


def features_for(aggregates: pd.DataFrame, config: JobConfig,
                 streams: np.ndarray | None = None) -> pd.DataFrame:
    """The windows' features, with every metric's recent level beside them when the
    explanations weigh it (``model.explain_recent_windows``); `streams` as `recent_levels`."""
    features = features_from_aggregates(aggregates, config.schema.metric_fields,
                                        config.features.statistics,
                                        config.features.include_count)
    levels = recent_levels_for(aggregates, config, streams)
    return features if levels is None else features.join(levels)


def recent_levels_for(aggregates: pd.DataFrame, config: JobConfig,
                      streams: np.ndarray | None = None) -> pd.DataFrame | None:
    """The windows' recent levels with the configuration's span (`recent_levels`), the
    columns the job's SQL hands the scoring UDF beside the aggregates; None when the
    explanations do not weigh them."""
    windows = config.model.explain_recent_windows
    if not windows:
        return None
    return recent_levels(aggregates, config.schema.key_field, config.schema.metric_fields,
                         windows, streams)


def training_settings(config: JobConfig) -> dict:
    """What of the configuration a trained model embodies, as its metadata records it."""
    return json.loads(json.dumps({
        "window": {"kind": config.window.kind, "size_s": config.window.size_s,
                   "slide_s": config.window.effective_slide_s},
        "features": {"statistics": list(config.features.statistics),
                     "include_count": config.features.include_count},
        "settings": dataclasses.asdict(config.model.detector_settings()),
    }))


def settings_changed_since_training(config: JobConfig, metadata: dict) -> list[str]:
    """The settings the configuration now gives otherwise than the model was trained with,
    as 'section.name: trained value -> configured value'; empty when the model is current.

    >>> from streamad.config import config_from_dict
    >>> config = config_from_dict({"schema": {"key_field": "host", "time_field": "ts",
    ...                                       "metric_fields": ["cpu"]}})
    >>> trained = training_settings(config)
    >>> trained["settings"]["cap"] = 5.0
    >>> settings_changed_since_training(config, trained)
    ['model.cap: 5.0 -> 10.0']
    """
    changes = []
    for section, current in training_settings(config).items():
        stored = metadata.get(section, {})
        for name, value in current.items():
            if stored.get(name) != value:
                prefix = "model" if section == "settings" else section
                trained = stored.get(name, "not recorded")
                changes.append(f"{prefix}.{name}: {trained} -> {value}")
    return changes


def train(config: JobConfig, paths: Sequence[Path], output_dir: Path | None = None,
          keep_below: float | None = None) -> ModelArtifact:
    """Fit the model on the events in CSV files `paths` and write the artifact
    (`keep_below` as `train_on_events`)."""
    paths = [Path(p) for p in paths]
    events = load_events_csv(paths, config.schema)
    reference = {"files": [{"path": str(p.resolve()), "sha256": sha256_of(p)} for p in paths]}
    return train_on_events(config, events, reference, output_dir, keep_below)


def train_on_events(config: JobConfig, events: pd.DataFrame, training_data: dict,
                    output_dir: Path | None = None, keep_below: float | None = None
                    ) -> ModelArtifact:
    """Fit the model on `events` (key, event_time_ms, metrics) and write the artifact.

    `training_data` says where the events came from; it goes into the metadata. With
    `keep_below`, the model now at the configuration's artifact folder first scores the
    windows, and those it scores at or above `keep_below` times their key's threshold are
    left out: a retrain on live events (the remedy for drift) then takes the new normal
    without the anomalies the model saw in them.
    """
    if events.empty:
        raise ValueError("no events to train on; check the files or the topic.")
    aggregates = windows_for(events, config)
    features = features_for(aggregates, config)
    names = feature_names(config.schema.metric_fields, config.features.statistics,
                          config.features.include_count)
    if keep_below is not None:
        aggregates, features, left_out = _without_flagged_windows(
            config, aggregates, features, names, keep_below)
        training_data = {**training_data, "left_out": left_out}
    log.info("training on %d events -> %d windows x %d features", len(events),
             len(features), len(names))
    settings = config.model.detector_settings()
    detector = Detector(names, settings).fit(features, aggregates[config.schema.key_field])
    train_scores = detector.training_scores_
    metadata = {
        "model_kind": settings.kind,
        "score_direction": "higher is more anomalous",
        "feature_names": names,
        "schema": {"key_field": config.schema.key_field, "time_field": config.schema.time_field,
                   "time_format": config.schema.time_format,
                   "metric_fields": list(config.schema.metric_fields)},
        "threshold": detector.pooled_threshold_,
        "thresholds_per_key": detector.thresholds_,
        "threshold_method": settings.threshold_rule.description,
        "training_data": {
            **training_data,
            "events": int(len(events)), "windows": int(len(features)),
            "keys": sorted(map(str, events[config.schema.key_field].unique())),
        },
        "training_scores": {"min": float(train_scores.min()), "max": float(train_scores.max()),
                            "mean": float(train_scores.mean())},
        **training_settings(config),
    }
    return save_artifact(output_dir or config.artifact_path, detector, metadata)


def _without_flagged_windows(config: JobConfig, aggregates: pd.DataFrame,
                             features: pd.DataFrame, names: list[str], keep_below: float
                             ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The windows the current model scores below `keep_below` times their key's threshold,
    and what was left out (for the metadata)."""
    if isinstance(keep_below, bool) or not isinstance(keep_below, (int, float)) \
            or not keep_below > 0:
        raise ValueError(f"keep_below must be a positive multiple of the threshold (1 leaves "
                         f"out the windows the current model flags); got {keep_below!r}.")
    try:
        current = load_artifact(config.artifact_path, names)
    except ArtifactError as exc:
        raise ArtifactError(f"keep_below (--keep-below) scores the windows with the model in "
                            f"use first, which cannot be loaded: {exc} Or train on every "
                            f"window (without --keep-below).") from exc
    keys = aggregates[config.schema.key_field]
    scored = current.scorer.score(features, keys, explain=False)
    kept = (scored["score"] < keep_below * scored["threshold"]).to_numpy()
    if not kept.any():
        raise ValueError(f"model {current.model_version} scores every one of the "
                         f"{len(kept):,} windows at or above {keep_below:g} times its "
                         f"threshold, so none is left to train on; raise --keep-below.")
    left_out = {"model_version": current.model_version, "keep_below": float(keep_below),
                "windows": int((~kept).sum())}
    log.info("left out %d of %d windows that model %s scores at or above %g x its threshold",
             left_out["windows"], len(kept), current.model_version, keep_below)
    return (aggregates.loc[kept].reset_index(drop=True),
            features.loc[kept].reset_index(drop=True), left_out)
