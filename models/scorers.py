"""Anomaly scorers following the scikit-learn estimator contract.

Every scorer's ``score_samples`` returns **higher = more anomalous** (scikit-learn's own
IsolationForest says the opposite; we flip it here, once, so that nobody downstream has to
remember which way a score points).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


class IsolationForestScorer(BaseEstimator):
    """IsolationForest with anomaly scores where higher means more anomalous.

    Non-finite features (a window whose std could not be computed, say) are rejected at
    ``fit`` and replaced by the training median at scoring time, so one odd window cannot
    fail a stream.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> scorer = IsolationForestScorer(n_estimators=50, random_state=0).fit(X)
    >>> bool(scorer.score_samples([[8.0, 8.0, 8.0]])[0] > scorer.score_samples([[0, 0, 0]])[0])
    True
    """

    def __init__(self, n_estimators: int = 200, max_samples="auto", random_state=None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators,
                                       max_samples=self.max_samples,
                                       random_state=self.random_state).fit(X)
        self.fill_values_ = np.median(X, axis=0)
        return self

    def score_samples(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64, ensure_all_finite=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} was "
                             f"fitted with {self.n_features_in_}.")
        bad = ~np.isfinite(X)
        if bad.any():
            X = np.where(bad, self.fill_values_[None, :], X)
        return -self.forest_.score_samples(X)
