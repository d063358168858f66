"""Turning raw scores into an anomaly grade and an alert threshold, without labels.

Raw scores of different scorers, and of one scorer on different keys, live on different
scales. `TailCalibrator` learns, from a key's training scores (taken as mostly normal), how
rare a score is: the probability ``p`` that a normal window scores at least as high. The body
of the distribution is read off the empirical quantiles; the tail, where there is too little
data, is a generalized Pareto fit to the peaks over a high quantile (the extreme-value
"peaks over threshold" method, POT).

The **grade** is ``-log10(p) / 6`` clipped to [0, 1]: 0.5 means one normal window in a
thousand scores this high, 1.0 one in a million or rarer. It means the same for every key
and every scorer.

Three unsupervised thresholds, each a `ThresholdRule` (a method and its level):

- ``quantile``: the (1 - target_alert_rate) quantile of training scores;
- ``pot``: the score whose tail probability under the POT fit is ``pot_risk``, which can lie
  beyond the highest training score;
- ``median_multiple``: ``median_multiple`` times the median training score. Both rules above
  read the tail of the training scores, and a training period is rarely all normal: its own
  unlabeled incidents *are* that tail, so the threshold lands wherever they happen to score
  (on SMD's machine-1-7, nearly 8 times the best threshold). The median does not move until
  half the training windows are anomalous. It needs a score whose zero means
  "exactly the normal" (a reconstruction error, a distance), so that "40 times the
  typical score" means the same on every key (``score_has_natural_zero`` of
  `models.scorers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

GRADE_DECADES = 6.0
THRESHOLD_METHODS = ("quantile", "pot", "median_multiple")
# The configuration key that holds each method's level.
LEVEL_NAMES = {"quantile": "target_alert_rate", "pot": "pot_risk",
               "median_multiple": "median_multiple"}


def check_threshold_level(method: str, level: float) -> None:
    """Raise ValueError unless `level` is a valid level of threshold `method`.

    >>> check_threshold_level("median_multiple", 0.5)
    Traceback (most recent call last):
    ...
    ValueError: median_multiple must be above 1 (a threshold above the typical training score), got 0.5.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r}; known: "
                         f"{', '.join(THRESHOLD_METHODS)}.")
    if method == "median_multiple":
        if not level > 1:
            raise ValueError(f"median_multiple must be above 1 (a threshold above the "
                             f"typical training score), got {level:g}.")
    elif not 0 < level < 1:
        raise ValueError(f"{LEVEL_NAMES[method]} must be between 0 and 1 (a probability), "
                         f"got {level:g}.")


@lru_cache(maxsize=8)
def _levels(points: int) -> np.ndarray:
    levels = np.linspace(0.0, 1.0, points)
    levels.flags.writeable = False  # shared by every calibrator with this many points
    return levels


def _finite(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no finite training scores to calibrate from; check that the "
                         "training data has windows with events.")
    return scores


def fit_generalized_pareto(excesses: np.ndarray) -> tuple[float, float]:
    """(shape, scale) of a generalized Pareto distribution, by the method of moments.

    Moments rather than maximum likelihood: it always returns, in closed form, where the
    likelihood can fail to converge on a few hundred peaks. The shape is kept in
    [-0.5, 0.5], where both moments exist and the tail stays plausible.

    >>> rng = np.random.default_rng(0)
    >>> shape, scale = fit_generalized_pareto(rng.exponential(2.0, size=20000))
    >>> round(shape, 1), round(scale, 1)
    (0.0, 2.0)
    """
    mean = float(np.mean(excesses))
    variance = float(np.var(excesses))
    if mean <= 0 or variance <= 0:
        return 0.0, max(mean, 1e-12)
    ratio = mean * mean / variance
    shape = float(np.clip(0.5 * (1.0 - ratio), -0.5, 0.5))
    scale = mean * (1.0 - shape)
    return shape, scale


class TailCalibrator:
    """Score -> tail probability -> grade, and the unsupervised thresholds, for one key.

    >>> rng = np.random.default_rng(1)
    >>> calibrator = TailCalibrator().fit(rng.normal(size=100_000))
    >>> calibrator.tail_probability(np.array([0.0, 3.09])).round(2).tolist()
    [0.5, 0.0]
    >>> calibrator.grade(np.array([3.09])).round(1).tolist()
    [0.5]
    """

    def __init__(self, tail_quantile: float = 0.98, quantile_points: int = 2_001):
        self.tail_quantile = tail_quantile
        self.quantile_points = quantile_points

    def fit(self, train_scores) -> "TailCalibrator":
        scores = np.sort(_finite(train_scores))
        self.n_train_ = int(scores.size)
        # The empirical distribution, kept as a fixed number of quantiles so the model's
        # size does not grow with the training data.
        self.quantiles_ = np.quantile(scores, self.levels_)
        self.tail_start_ = float(np.quantile(scores, self.tail_quantile))
        peaks = scores[scores > self.tail_start_] - self.tail_start_
        self.tail_share_ = max(peaks.size / scores.size, 1.0 / scores.size)
        self.shape_, self.scale_ = (fit_generalized_pareto(peaks) if peaks.size >= 10
                                    else (0.0, max(float(np.std(scores)), 1e-12)))
        self.max_train_score_ = float(scores[-1])
        return self

    @property
    def levels_(self) -> np.ndarray:
        """The levels of ``quantiles_``: the same for every key, so shared, not stored (a
        model of many keys would hold one copy per key)."""
        return _levels(self.quantile_points)

    def tail_probability(self, scores) -> np.ndarray:
        """P(normal score >= s), from the empirical body and the POT tail."""
        scores = np.asarray(scores, dtype=np.float64)
        body = 1.0 - np.interp(scores, self.quantiles_, self.levels_)
        excess = np.maximum(scores - self.tail_start_, 0.0)
        if abs(self.shape_) < 1e-6:
            tail = self.tail_share_ * np.exp(-excess / self.scale_)
        else:
            base = np.maximum(1.0 + self.shape_ * excess / self.scale_, 1e-300)
            tail = self.tail_share_ * base ** (-1.0 / self.shape_)
        p = np.where(scores > self.tail_start_, tail, body)
        p = np.where(np.isnan(scores), 1.0, p)
        return np.clip(p, 1e-300, 1.0)

    def grade(self, scores) -> np.ndarray:
        """Anomaly grade in [0, 1]: -log10(tail probability) / 6."""
        return np.clip(-np.log10(self.tail_probability(scores)) / GRADE_DECADES, 0.0, 1.0)

    def threshold(self, method: str, level: float) -> float:
        """The key's alert threshold by `method` (see the module docstring) at `level`: the
        target alert rate, the tail risk or the multiple of the median (``LEVEL_NAMES``).

        >>> calibrator = TailCalibrator().fit(np.arange(1000.0))
        >>> calibrator.threshold("quantile", 0.01)
        989.01
        >>> calibrator.threshold("median_multiple", 3)
        1498.5
        """
        check_threshold_level(method, level)
        if method == "quantile":
            return float(np.interp(1.0 - level, self.levels_, self.quantiles_))
        if method == "pot":
            return self._tail_score(level)
        return level * self.median_

    @property
    def median_(self) -> float:
        return float(np.interp(0.5, self.levels_, self.quantiles_))

    def _tail_score(self, probability: float) -> float:
        """The score whose tail probability is `probability` (inverse of the POT tail)."""
        ratio = self.tail_share_ / probability
        if ratio <= 1.0:
            return self.tail_start_
        if abs(self.shape_) < 1e-6:
            return float(self.tail_start_ + self.scale_ * np.log(ratio))
        return float(self.tail_start_ + self.scale_ / self.shape_ * (ratio ** self.shape_ - 1.0))


@dataclass(frozen=True)
class ThresholdRule:
    """An unsupervised threshold rule: a method of `THRESHOLD_METHODS` and its level (the
    target alert rate, the tail risk or the multiple of the median).

    >>> rule = ThresholdRule("median_multiple", 20)
    >>> rule.name, rule.description
    ('20 x median', "20 times the median of each key's training scores")
    >>> rule.threshold(TailCalibrator().fit(np.arange(1, 1000.0)))
    10000.0
    """
    method: str
    level: float

    def __post_init__(self):
        check_threshold_level(self.method, self.level)

    @property
    def level_name(self) -> str:
        """The configuration key (under ``model``) that holds the level."""
        return LEVEL_NAMES[self.method]

    @property
    def name(self) -> str:
        """A short name for tables."""
        if self.method == "quantile":
            return f"quantile {1 - self.level:g}"
        if self.method == "pot":
            return f"POT risk {self.level:g}"
        return f"{self.level:g} x median"

    @property
    def description(self) -> str:
        """What the rule does, in a sentence fragment for reports and model metadata."""
        if self.method == "quantile":
            return f"quantile {1 - self.level:g} of each key's training scores"
        if self.method == "pot":
            return (f"peaks over threshold: tail probability {self.level:g} under a "
                    f"generalized Pareto fit to each key's training scores")
        return f"{self.level:g} times the median of each key's training scores"

    def threshold(self, calibrator: TailCalibrator) -> float:
        return calibrator.threshold(self.method, self.level)
