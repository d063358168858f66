"""Alert thresholds chosen without labels."""

from __future__ import annotations

import numpy as np


def threshold_for_alert_rate(train_scores, target_alert_rate: float) -> float:
    """The score above which `target_alert_rate` of the training windows lie.

    The training data is taken as (mostly) normal, so this is the share of normal windows
    that would alert: the expected false-alert rate, chosen without labels.

    >>> threshold_for_alert_rate(np.arange(1000.0), 0.01)
    989.01
    """
    scores = np.asarray(train_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no finite training scores to set a threshold from; "
                         "check that the training data has windows with events.")
    if not 0 < target_alert_rate < 1:
        raise ValueError(f"target_alert_rate must be between 0 and 1, got {target_alert_rate}.")
    return float(np.quantile(scores, 1.0 - target_alert_rate))
