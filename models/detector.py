"""The scoring core: window features of many keys in, scores, grades, alerts and reasons out.

`Detector` is what a model artifact holds and what both the streaming job's pandas UDF and
the offline path (`streamad evaluate`, training) call. It is free of Flink. Per window:

1. `KeyedScaler` puts the features on the scale of the key's own normal, capped;
2. a scorer (`models.scorers`) gives a raw score, higher = more anomalous: either one scorer
   pooled over all keys (``baseline="pooled"``) or one per key (``"per_key"``; keys with too
   little training data, and keys unseen in training, fall back to the pooled one);
3. the key's `TailCalibrator` turns it into a grade in [0, 1] and holds the key's threshold;
4. the explanation names the metrics that drove it (``explain_with``):

   - ``rarity`` (the default): how rare each metric's distance from the key's normal is
     for the key (`KeyedScaler.rarity`), its rarest level feature (the spread statistics,
     ``SPREAD_STATISTICS``, left out), weighed by 1 / its share of training windows; within
     one step of rarity, the metric further out in standard deviations first. With
     ``explain_recent_windows``, the rarity of the metric's move from its own recent level
     (models/features.py) is added to it, in decades: against the training windows' moves
     from theirs, how rare it is for the metric to have moved this far from where it was
     over the key's last windows. A metric that just moved then comes before one that has
     sat as far from the key's normal for days;
   - ``deviation``: each metric's largest distance from the key's normal, in the key's own
     standard deviations, over the metric's features (not capped);
   - ``score``: the scorer's own feature contributions (for PCA the squared residuals),
     summed per metric.

   On SMD's interpretation labels rarity names the labeled metrics most often, then the
   deviations (``streamad evaluate`` reports all three): a metric that spikes now and then
   is far out in standard deviations at its usual spike, but not rare. A reconstruction
   error smears one metric's deviation over the metrics it correlates with; the score's own
   contributions still say what a multivariate scorer reacted to, where a window breaks a
   correlation without any metric leaving its range.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from models.features import COUNT_COLUMN, SPREAD_STATISTICS, recent_level_names
from models.scaling import (RARITY_DECADES, TAIL_BAND_DECADES, KeyedScaler,
                            rows_of_each_key)
from models.scorers import SCORERS, make_scorer
from models.threshold import LEVEL_NAMES, TailCalibrator, ThresholdRule

BASELINES = ("pooled", "per_key")
EXPLANATIONS = ("rarity", "deviation", "score")
# Explained by rarity, a metric weighs 1 / (the share of training windows as far out): the
# shares then go to the rarest metrics, as the deviations' shares go to the furthest. Within
# one step of rarity, the metric further out in sd comes first: its weight is multiplied by
# up to 1 + _TIE_BREAK (1 + _TIE_BREAK * sd / (1 + sd)), less than the ratio of two steps
# (10 ** (3/16), 1.54), so the tie-break never reorders two steps.
_TIE_BREAK = 0.1
assert 1.0 + _TIE_BREAK < 10.0 ** np.diff(RARITY_DECADES).min()


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that defines a detector; built from the configuration's model section."""
    kind: str = "iforest"
    baseline: str = "pooled"
    cap: float = 10.0
    # Features with a heavier tail than normal are scaled by it (models/scaling.py); None:
    # by the standard deviation alone.
    scale_tail_quantile: float | None = 0.999
    # How wide a band of tail levels around it the tail is read over (scaling.py).
    scale_tail_band_decades: float = TAIL_BAND_DECADES
    threshold_method: str = "quantile"
    target_alert_rate: float = 0.01
    pot_risk: float = 1e-3
    median_multiple: float = 50.0
    n_estimators: int = 200
    pca_variance: float = 0.9
    n_neighbors: int = 5
    random_state: int | None = 0
    explain_top: int = 5
    explain_with: str = "rarity"
    # With rarity, the rarity of each metric's move from its recent level over this many
    # windows is added (module docstring); 0: not.
    explain_recent_windows: int = 0
    # A key needs this many training windows for a model and a calibration of its own.
    min_key_windows: int = 200

    @property
    def threshold_rule(self) -> ThresholdRule:
        method = self.threshold_method
        return ThresholdRule(method, getattr(self, LEVEL_NAMES[method]))

    def for_scores_only(self) -> "DetectorSettings":
        """These settings without the explanations' recent levels: the same scores and
        decisions, from windows that need not carry the levels (studies of the score)."""
        return replace(self, explain_recent_windows=0)


def driver_columns(explain_top: int) -> list[tuple[str, str, str]]:
    """(metric, share, deviation) column names of the ranked drivers where rows are flat (the
    job's rows and alerts), most important first.

    >>> driver_columns(1)
    [('driver_1', 'driver_1_share', 'driver_1_deviation')]
    """
    return [(f"driver_{i}", f"driver_{i}_share", f"driver_{i}_deviation")
            for i in range(1, explain_top + 1)]


def joined_metrics(metrics: Sequence[str]) -> str:
    """A list of metrics as the one text column flat rows carry (``out_of_range``).

    >>> joined_metrics(["m04", "m06"]), split_metrics(joined_metrics(["m04", "m06"]))
    ('m04,m06', ['m04', 'm06'])
    >>> split_metrics(""), split_metrics(None)
    ([], [])
    """
    return ",".join(metrics)


def split_metrics(text: str | None) -> list[str]:
    """The metrics of a `joined_metrics` text; none for an empty or missing one."""
    return text.split(",") if text else []


def threshold_fits_scorer(rule: ThresholdRule, kind: str) -> bool:
    """Whether `rule` can set thresholds on the scores of scorer `kind`: a median multiple
    needs a score whose zero is "normal"."""
    return rule.method != "median_multiple" or SCORERS[kind].score_has_natural_zero


def check_threshold_fits_scorer(rule: ThresholdRule, kind: str) -> None:
    """Refuse a threshold rule that cannot work on the scorer's scores, saying why."""
    if not threshold_fits_scorer(rule, kind):
        scorers = [name for name, cls in SCORERS.items() if cls.score_has_natural_zero]
        raise ValueError(
            f"the median_multiple threshold needs a score that is 0 on exactly normal windows; "
            f"the {kind} scorer's is not. Use it with {', '.join(scorers)}, or choose the "
            f"quantile or pot threshold for {kind}.")


def metric_of(feature: str) -> str:
    """The metric a feature is computed from: ``cpu__mean`` -> ``cpu``."""
    return feature.split("__", 1)[0]


class Detector:
    """Scores windows of any number of keys; see the module docstring.

    >>> rng = np.random.default_rng(0)
    >>> names = ["cpu__mean", "mem__mean"]
    >>> train = pd.DataFrame(rng.normal(size=(600, 2)), columns=names)
    >>> detector = Detector(names, DetectorSettings(kind="robust_z")).fit(train, ["a"] * 600)
    >>> result = detector.score(pd.DataFrame([[0.0, 9.0]], columns=names), ["a"])
    >>> bool(result.is_anomaly[0]), result.drivers[0][0][0]
    (True, 'mem')
    """

    def __init__(self, feature_names: Sequence[str], settings: DetectorSettings):
        self.feature_names = list(feature_names)
        self.settings = settings
        self.feature_metrics = [metric_of(f) for f in self.feature_names]
        self.metrics = list(dict.fromkeys(self.feature_metrics))
        # (features x metrics) 0/1 matrix: feature contributions -> metric contributions
        self._to_metric = np.zeros((len(self.feature_metrics), len(self.metrics)))
        for i, metric in enumerate(self.feature_metrics):
            self._to_metric[i, self.metrics.index(metric)] = 1.0
        # Per metric, the features its rarity is read from: its level features, or all of
        # them where it has nothing but spread statistics.
        spread = np.array([f.rsplit("__", 1)[-1] in SPREAD_STATISTICS and "__" in f
                           for f in self.feature_names])
        self._rarity_features = [np.flatnonzero(own & ~spread) if (own & ~spread).any()
                                 else np.flatnonzero(own)
                                 for own in (self._to_metric > 0).T]

    def per_metric(self, per_feature: np.ndarray) -> np.ndarray:
        """(windows x features) values summed over each metric's features: (windows x
        metrics), in the order of ``metrics``."""
        return per_feature @ self._to_metric

    # ---------------------------------------------------------------- training
    def fit(self, features: pd.DataFrame, keys: Sequence) -> "Detector":
        settings = self.settings
        check_threshold_fits_scorer(settings.threshold_rule, settings.kind)
        keys = np.asarray(keys).astype(str)
        X = self._matrix(features)
        self.scaler_ = KeyedScaler(cap=settings.cap, min_key_rows=settings.min_key_windows,
                                   tail_quantile=settings.scale_tail_quantile,
                                   tail_band_decades=settings.scale_tail_band_decades
                                   ).fit(X, keys, groups=self.feature_metrics,
                                         levels=self._levels(features))
        Z = self.scaler_.transform(X, keys)
        key_rows = rows_of_each_key(keys)
        trained_keys = [(key, rows) for key, rows in key_rows
                        if len(rows) >= settings.min_key_windows]
        self.pooled_scorer_ = self._new_scorer().fit(Z)
        self.key_scorers_ = {}
        if settings.baseline == "per_key":
            self.key_scorers_ = {key: self._new_scorer().fit(Z[rows])
                                 for key, rows in trained_keys}
        scores = self._training_scores(Z, key_rows)
        self.pooled_calibrator_ = TailCalibrator().fit(scores)
        self.calibrators_ = {key: TailCalibrator().fit(scores[rows])
                             for key, rows in trained_keys}
        self.thresholds_ = {key: self._threshold(calibrator)
                            for key, calibrator in self.calibrators_.items()}
        self.pooled_threshold_ = self._threshold(self.pooled_calibrator_)
        self.training_scores_ = scores
        return self

    def explained_with(self, method: str) -> "Detector":
        """This fitted detector, explaining its windows by `method` (one of EXPLANATIONS);
        the fitted parts are shared, not copied."""
        if method not in EXPLANATIONS:
            raise ValueError(f"unknown explanation {method!r}; known: {', '.join(EXPLANATIONS)}.")
        other = copy.copy(self)
        other.settings = replace(self.settings, explain_with=method)
        return other

    def _new_scorer(self):
        s = self.settings
        return make_scorer(s.kind, n_estimators=s.n_estimators, pca_variance=s.pca_variance,
                           n_neighbors=s.n_neighbors, random_state=s.random_state)

    def _threshold(self, calibrator: TailCalibrator) -> float:
        return self.settings.threshold_rule.threshold(calibrator)

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.feature_names if f not in features.columns]
        if missing:
            raise ValueError(f"the features lack {missing[:5]} that the detector was trained "
                             f"on; compute the same features, or retrain.")
        return features[self.feature_names].to_numpy(dtype=np.float64)

    def _levels(self, features: pd.DataFrame) -> np.ndarray | None:
        """(windows x features): each feature's recent level, its metric's (NaN for the
        event count); None unless the explanations weigh it."""
        windows = self.settings.explain_recent_windows
        if not windows:
            return None
        metrics = [m for m in self.metrics if m != COUNT_COLUMN]
        columns = dict(zip(metrics, recent_level_names(metrics)))
        missing = [c for c in columns.values() if c not in features.columns]
        if missing:
            raise ValueError(
                f"the windows lack the recent levels {missing[:3]} that "
                f"explain_recent_windows = {windows} needs; compute them with "
                f"models.features.recent_levels (streamad's training and job do), or set "
                f"model.explain_recent_windows to 0.")
        nothing = np.full(len(features), np.nan)
        return np.column_stack([features[columns[m]].to_numpy(np.float64) if m in columns
                                else nothing for m in self.feature_metrics])

    def _scorer_for(self, key: str):
        return self.key_scorers_.get(key, self.pooled_scorer_)

    def calibrator_for(self, key: str) -> TailCalibrator:
        """The key's calibrator; the pooled one for keys with too little or no training."""
        return self.calibrators_.get(key, self.pooled_calibrator_)

    def threshold_for(self, key: str) -> float:
        return self.thresholds_.get(key, self.pooled_threshold_)

    def _training_scores(self, Z: np.ndarray, key_rows: list[tuple[str, np.ndarray]]
                         ) -> np.ndarray:
        """Each training window's score, from the scorer its key uses, as a new window would
        score: what the calibrations and thresholds are fitted on. `key_rows` is
        `rows_of_each_key` of the training windows' keys."""
        scores = np.empty(len(Z))
        for scorer, rows in self._rows_of_each_scorer(key_rows):
            scores[rows] = scorer.training_scores(Z[rows])
        return scores

    def _rows_of_each_scorer(self, key_rows: list[tuple[str, np.ndarray]]
                             ) -> list[tuple[object, np.ndarray]]:
        """Each scorer the keys use, with the rows of all keys that use it. A scorer scores
        each row on its own (the contract in `models.scorers`), so the keys sharing one
        scorer (all keys, with the pooled baseline) are scored in one call, not one call
        per key: each call costs scikit-learn's input checks, about a millisecond."""
        rows_of = {}
        for key, rows in key_rows:
            scorer = self._scorer_for(key)
            rows_of.setdefault(id(scorer), (scorer, []))[1].append(rows)
        return [(scorer, np.concatenate(parts)) for scorer, parts in rows_of.values()]

    # ---------------------------------------------------------------- scoring
    def score(self, features: pd.DataFrame, keys: Sequence, explain: bool = True
              ) -> pd.DataFrame:
        """One row per window: score, grade, threshold, is_anomaly, drivers, out_of_range.

        ``drivers`` lists up to ``explain_top`` (metric, share, deviation) triples, largest
        share first. The share is the metric's part of the window's summed rarity weights
        (see ``_TIE_BREAK``), deviations or score contributions (``explain_with``, see the
        module docstring); the deviation
        is signed, the metric's furthest feature from the key's normal in the key's training
        standard deviations (+37.2: far above normal). ``out_of_range`` lists the metrics
        with a feature at the scaling cap (far outside the key's training range).
        """
        return self.score_with_shares(features, keys, explain)[0]

    def score_with_shares(self, features: pd.DataFrame, keys: Sequence, explain: bool = True
                          ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """`score`, and with ``explain`` the (windows x metrics) matrix of metric shares,
        each row summing to 1 (0 where all contributions are 0); None without."""
        keys = np.asarray(keys).astype(str)
        X = self._matrix(features)
        if explain:
            Z, deviations = self.scaler_.transform_and_standardize(X, keys)
        else:
            Z, deviations = self.scaler_.transform(X, keys), None
        scores = np.empty(len(Z))
        grades = np.empty(len(Z))
        thresholds = np.empty(len(Z))
        by_score = explain and self.settings.explain_with == "score"
        contributions = np.empty_like(Z) if by_score else None
        key_rows = rows_of_each_key(keys)
        for scorer, rows in self._rows_of_each_scorer(key_rows):
            if by_score:
                scores[rows], contributions[rows] = scorer.score_and_contributions(Z[rows])
            else:
                scores[rows] = scorer.score_samples(Z[rows])
        for key, rows in key_rows:
            grades[rows] = self.calibrator_for(key).grade(scores[rows])
            thresholds[rows] = self.threshold_for(key)
        result = pd.DataFrame({"score": scores, "grade": grades, "threshold": thresholds,
                               "is_anomaly": scores > thresholds}, index=features.index)
        if not explain:
            return result, None
        signed = self._largest_deviations(deviations)
        if by_score:
            per_metric = self.per_metric(contributions)
        elif self.settings.explain_with == "rarity":
            levels = self._levels(features)
            recent = (None if levels is None
                      else self.scaler_.recent_rarity(X, levels, keys))
            per_metric = self._rarest(self.scaler_.rarity(deviations, keys), deviations,
                                      recent)
        else:
            per_metric = np.abs(signed)
        totals = per_metric.sum(axis=1, keepdims=True)
        shares = np.divide(per_metric, totals, out=np.zeros_like(per_metric), where=totals > 0)
        result["drivers"] = self._drivers(shares, signed)
        result["out_of_range"] = self._out_of_range(Z)
        return result, shares

    def _largest_deviations(self, deviations: np.ndarray) -> np.ndarray:
        """(windows x metrics): per metric, the deviation of its feature furthest from the
        key's normal, with its sign; a missing feature deviates by nothing."""
        deviations = np.nan_to_num(deviations, nan=0.0)
        rows = np.arange(len(deviations))
        per_metric = np.empty((len(deviations), len(self.metrics)))
        for j in range(len(self.metrics)):
            own = deviations[:, self._to_metric[:, j] > 0]
            per_metric[:, j] = own[rows, np.abs(own).argmax(axis=1)]
        return per_metric

    def _rarest(self, rarity: np.ndarray, deviations: np.ndarray,
                recent: np.ndarray | None = None) -> np.ndarray:
        """(windows x metrics): per metric, the weight of its rarest ranked feature, times
        that of its rarest move from the recent level when `recent` is given (decades
        added), with the tie-break by its largest deviation in sd (see ``_TIE_BREAK``)."""
        distance = np.abs(np.nan_to_num(deviations, nan=0.0))
        per_metric = np.empty((len(rarity), len(self.metrics)))
        for j, features in enumerate(self._rarity_features):
            furthest = distance[:, features].max(axis=1)
            decades = rarity[:, features].max(axis=1)
            if recent is not None:
                decades = decades + recent[:, features].max(axis=1)
            per_metric[:, j] = 10.0 ** decades * (1.0 + _TIE_BREAK * furthest / (1.0 + furthest))
        return per_metric

    def _drivers(self, shares: np.ndarray, deviations: np.ndarray
                 ) -> list[list[tuple[str, float, float]]]:
        top = np.argsort(-shares, axis=1, kind="stable")[:, :self.settings.explain_top]
        top_shares = np.take_along_axis(shares, top, axis=1)
        # Built from whole arrays, not cell by cell: this runs on every window the job scores.
        rows = zip(np.asarray(self.metrics, dtype=object)[top].tolist(),
                   np.round(top_shares, 4).tolist(),
                   np.round(np.take_along_axis(deviations, top, axis=1), 2).tolist(),
                   (top_shares > 0).tolist())
        return [[(metric, share, deviation)
                 for metric, share, deviation, named in zip(*row) if named] for row in rows]

    def _out_of_range(self, Z: np.ndarray) -> list[list[str]]:
        capped = self.per_metric(self.scaler_.at_cap(Z).astype(np.float64)) > 0
        names = np.array(self.metrics)
        return [[m for m in names[row] if m != COUNT_COLUMN] for row in capped]
