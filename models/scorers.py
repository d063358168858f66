"""Anomaly scorers following the scikit-learn estimator contract.

Every scorer has ``fit(X)``, ``score_samples(X)`` and ``feature_contributions(X)``:

- ``score_samples`` returns **higher = more anomalous** (scikit-learn's own IsolationForest
  says the opposite; it is flipped here, once, so that nobody downstream has to remember
  which way a score points);
- ``feature_contributions`` returns an (n_samples, n_features) array of non-negative shares
  of each feature in the sample's anomaly, the raw material of an alert's explanation.
  ``score_and_contributions`` returns both, computing shared work once where it can;
- ``training_scores`` scores the rows the scorer was fitted on as if each were new, which is
  what the thresholds are calibrated on: a scorer that keeps training rows (kNN) must not
  find a row's own copy among its neighbours.

A row's score and contributions depend on that row alone, never on the other rows scored
with it: `models.detector.Detector` relies on it to score all keys that share a scorer in one
call.

The scores whose zero means "exactly normal" are all squared deviations (a squared
reconstruction error, squared z-scores, squared distances), so that a multiple of the typical
score means the same for each of them (the ``median_multiple`` threshold).

Scorers see features that `models.scaling.KeyedScaler` has already put on a common scale
(each key against its own normal, capped), so they need no scaling of their own. Non-finite
values are rejected at ``fit`` and replaced by the training median at scoring time, so one
odd window cannot fail a stream. ``SCORERS`` maps the configuration's ``model.kind`` to a
class.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


class _Scorer(BaseEstimator):
    """What every scorer shares: input checks and filling non-finite values."""

    # True where a score of 0 means "exactly the training normal" and scores scale with the
    # deviation (squared errors, distances), so "m times the typical score" means the same
    # on every key: the ``median_multiple`` threshold (models/threshold.py) needs that.
    score_has_natural_zero = True

    def _fit_input(self, X):
        X = validate_data(self, X, dtype=np.float64)
        self.fill_values_ = np.median(X, axis=0)
        return X

    def _score_input(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64, ensure_all_finite=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} was "
                             f"fitted with {self.n_features_in_}.")
        bad = ~np.isfinite(X)
        if bad.any():
            X = np.where(bad, self.fill_values_[None, :], X)
        return X

    def score_and_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``score_samples`` and ``feature_contributions`` of the same rows together; a
        scorer whose score is built from its contributions overrides this to compute once."""
        return self.score_samples(X), self.feature_contributions(X)

    def training_scores(self, X) -> np.ndarray:
        """The scores of rows this scorer was fitted on, each scored as a new row would be."""
        return self.score_samples(X)


class RobustZScorer(_Scorer):
    """Windowed-Gaussian baseline: mean squared robust z-score over the features.

    Each feature is centred on its training median and scaled by its MAD (1.4826 * median
    absolute deviation, floored at ``min_scale`` so a feature that never moved in training
    does not divide by zero). The score is the mean of the squared z-scores; each feature's
    contribution is its squared z-score.

    >>> rng = np.random.default_rng(0)
    >>> scorer = RobustZScorer().fit(rng.normal(size=(500, 3)))
    >>> scorer.score_samples([[0, 0, 0], [0, 0, 6]]).round(1).tolist()
    [0.0, 10.3]
    """

    def __init__(self, min_scale: float = 1e-3):
        self.min_scale = min_scale

    def fit(self, X, y=None):
        X = self._fit_input(X)
        self.center_ = np.median(X, axis=0)
        mad = 1.4826 * np.median(np.abs(X - self.center_), axis=0)
        self.scale_ = np.maximum(mad, self.min_scale)
        return self

    def feature_contributions(self, X) -> np.ndarray:
        X = self._score_input(X)
        return ((X - self.center_) / self.scale_) ** 2

    def score_samples(self, X) -> np.ndarray:
        return self.feature_contributions(X).mean(axis=1)

    def score_and_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        contributions = self.feature_contributions(X)
        return contributions.mean(axis=1), contributions


class PCAScorer(_Scorer):
    """Reconstruction error of a PCA that keeps ``variance`` of the training variance.

    Normal windows lie near the principal subspace of normal data; an anomaly leaves it. The
    score is the squared distance to the subspace, each feature contributing its squared
    residual.

    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=(500, 1))
    >>> scorer = PCAScorer(variance=0.9).fit(np.hstack([t, 2 * t]))
    >>> bool(scorer.score_samples([[1.0, -2.0]])[0] > scorer.score_samples([[1.0, 2.0]])[0])
    True
    """

    def __init__(self, variance: float = 0.9):
        self.variance = variance

    def fit(self, X, y=None):
        X = self._fit_input(X)
        self.pca_ = PCA(n_components=self.variance, svd_solver="full").fit(X)
        return self

    def feature_contributions(self, X) -> np.ndarray:
        X = self._score_input(X)
        reconstructed = self.pca_.inverse_transform(self.pca_.transform(X))
        return (X - reconstructed) ** 2

    def score_samples(self, X) -> np.ndarray:
        return self.feature_contributions(X).sum(axis=1)

    def score_and_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        contributions = self.feature_contributions(X)
        return contributions.sum(axis=1), contributions


class KNNScorer(_Scorer):
    """Mean squared distance to the ``n_neighbors`` nearest training windows.

    Squared, as the other scores with a natural zero are squared deviations: "40 times the
    typical score" then means the same for each. Training keeps at most ``max_reference``
    windows (a random sample) so scoring cost does not grow with the history. A feature's
    contribution is its squared difference to the nearest training window.

    >>> rng = np.random.default_rng(0)
    >>> scorer = KNNScorer(random_state=0).fit(rng.normal(size=(300, 2)))
    >>> bool(scorer.score_samples([[5.0, 5.0]])[0] > scorer.score_samples([[0.0, 0.0]])[0])
    True

    A kept training window is its own nearest neighbour; its training score leaves it out.

    >>> scorer = KNNScorer(n_neighbors=1).fit([[0.0], [1.0], [3.0]])
    >>> scorer.score_samples([[3.0]]).tolist(), scorer.training_scores([[3.0]]).tolist()
    ([0.0], [4.0])
    """

    def __init__(self, n_neighbors: int = 5, max_reference: int = 5000, random_state=None):
        self.n_neighbors = n_neighbors
        self.max_reference = max_reference
        self.random_state = random_state

    def fit(self, X, y=None):
        X = self._fit_input(X)
        if len(X) > self.max_reference:
            rng = check_random_state(self.random_state)
            X = X[np.sort(rng.choice(len(X), self.max_reference, replace=False))]
        self.reference_ = X
        # One neighbour more than scored, for training rows that find themselves first.
        self.neighbors_ = NearestNeighbors(n_neighbors=min(self.n_neighbors + 1, len(X))).fit(X)
        return self

    def _neighbours(self) -> int:
        return min(self.n_neighbors, len(self.reference_))

    def feature_contributions(self, X) -> np.ndarray:
        X = self._score_input(X)
        _, nearest = self.neighbors_.kneighbors(X, n_neighbors=1)
        return (X - self.reference_[nearest[:, 0]]) ** 2

    def score_samples(self, X) -> np.ndarray:
        X = self._score_input(X)
        distances, _ = self.neighbors_.kneighbors(X, n_neighbors=self._neighbours())
        return (distances ** 2).mean(axis=1)

    def training_scores(self, X) -> np.ndarray:
        X = self._score_input(X)
        k = self._neighbours()
        if k == len(self.reference_):  # no neighbour to spare: score as any row
            return self.score_samples(X)
        distances, _ = self.neighbors_.kneighbors(X, n_neighbors=k + 1)
        # A row at distance 0 from its nearest is a kept training row (or an exact copy of
        # one, which is the same window): skip that first neighbour.
        found_itself = distances[:, 0] == 0.0
        kept = np.where(found_itself[:, None], distances[:, 1:], distances[:, :-1])
        return (kept ** 2).mean(axis=1)


class IsolationForestScorer(_Scorer):
    """IsolationForest with anomaly scores where higher means more anomalous.

    A forest has no per-feature decomposition of its score, so a feature's contribution is
    its squared deviation from the training median in units of the training MAD: which
    features are furthest from normal.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> scorer = IsolationForestScorer(n_estimators=50, random_state=0).fit(X)
    >>> bool(scorer.score_samples([[8.0, 8.0, 8.0]])[0] > scorer.score_samples([[0, 0, 0]])[0])
    True
    """

    # The forest's score is an isolation depth mapped into (0, 1], about 0.5 on typical
    # windows: its zero is not "normal".
    score_has_natural_zero = False

    def __init__(self, n_estimators: int = 200, max_samples="auto", random_state=None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X, y=None):
        X = self._fit_input(X)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators,
                                       max_samples=self.max_samples,
                                       random_state=self.random_state).fit(X)
        self.deviation_ = RobustZScorer().fit(X)
        return self

    def feature_contributions(self, X) -> np.ndarray:
        return self.deviation_.feature_contributions(self._score_input(X))

    def score_samples(self, X) -> np.ndarray:
        X = self._score_input(X)
        return -self.forest_.score_samples(X)


SCORERS = {
    "iforest": IsolationForestScorer,
    "pca": PCAScorer,
    "robust_z": RobustZScorer,
    "knn": KNNScorer,
}


def make_scorer(kind: str, n_estimators: int = 200, pca_variance: float = 0.9,
                n_neighbors: int = 5, random_state=None):
    """The scorer the configuration's ``model`` section names, with its settings."""
    if kind == "iforest":
        return IsolationForestScorer(n_estimators=n_estimators, random_state=random_state)
    if kind == "pca":
        return PCAScorer(variance=pca_variance)
    if kind == "robust_z":
        return RobustZScorer()
    if kind == "knn":
        return KNNScorer(n_neighbors=n_neighbors, random_state=random_state)
    raise ValueError(f"unknown scorer kind {kind!r}; known: {', '.join(SCORERS)}.")
