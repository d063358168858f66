"""Detection-quality measures on labeled data: one label and one decision per time point.

All functions take 0/1 (or boolean) arrays over the same points in time order.

- point-wise precision, recall and F1: every point counts once; the primary figures;
- composite F1 (Garg et al., 2021): event-wise recall (share of labeled segments with at
  least one flagged point) combined with point-wise precision;
- PA%K (Kim et al., 2022): a labeled segment counts as fully detected only when at least K%
  of its points are flagged; K = 0 is the classic point adjustment, which inflates scores so
  much that random scores look good (reported for comparison with the literature only);
- segment detection, detection delay, and false alerts per day;
- how far the detector got on each labeled segment: whether a lower threshold would find
  it, or whether it scores like the unlabeled points;
- HitRate@P% (Su et al., 2019) for explanations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def segments(labels) -> list[tuple[int, int]]:
    """(start, end) of each run of 1s, end exclusive.

    >>> segments([0, 1, 1, 0, 1])
    [(1, 3), (4, 5)]
    """
    labels = np.asarray(labels, dtype=np.int8)
    edges = np.diff(np.concatenate([[0], labels, [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def precision_recall_f1(predicted, labels) -> dict[str, float]:
    """
    >>> precision_recall_f1([1, 1, 0, 0], [1, 0, 1, 0])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    predicted = np.asarray(predicted, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    tp = float(np.sum(predicted & labels))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(labels.sum()), 1.0)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def point_adjusted(predicted, labels, k_percent: float = 0.0) -> np.ndarray:
    """Predictions with each labeled segment filled in when more than K% of it is flagged
    (any point at all for K = 0).

    >>> point_adjusted([0, 1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1], k_percent=20).tolist()
    [False, True, False, False, False, False, False]
    >>> point_adjusted([0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1], k_percent=20).tolist()
    [False, True, True, True, True, True, True]
    """
    adjusted = np.asarray(predicted, dtype=bool).copy()
    for start, end in segments(labels):
        share = adjusted[start:end].mean()
        if (share > 0 and k_percent == 0) or (k_percent > 0 and share * 100 > k_percent):
            adjusted[start:end] = True
    return adjusted


def composite_f1(predicted, labels) -> float:
    """
    >>> round(composite_f1([0, 1, 0, 0, 0, 0], [0, 1, 1, 0, 1, 1]), 3)
    0.667
    """
    point_precision = precision_recall_f1(predicted, labels)["precision"]
    return _f1(point_precision, detection_summary(predicted, labels)["segment_recall"])


def detection_summary(predicted, labels) -> dict:
    """Labeled segments detected and missed, and the delay to the first flagged point."""
    predicted = np.asarray(predicted, dtype=bool)
    delays = []
    missed = 0
    for start, end in segments(labels):
        hits = np.flatnonzero(predicted[start:end])
        if hits.size:
            delays.append(int(hits[0]))
        else:
            missed += 1
    total = len(delays) + missed
    return {"segments": total, "detected": len(delays), "missed": missed,
            "segment_recall": len(delays) / total if total else 0.0,
            "median_delay_points": float(np.median(delays)) if delays else None,
            "mean_delay_points": float(np.mean(delays)) if delays else None}


# A missed segment "looks ordinary" when more than this share of the unlabeled points score
# above its median point: a threshold that flagged half of it would flag more than this
# share of the normal points too, far more false alarms than it would find.
ORDINARY_SHARE = 0.01


def segment_reach(scores, thresholds, predicted, labels) -> list[dict]:
    """How far the detector got on each labeled segment, in time order: its points, the
    share of them flagged, its peak and median score over the threshold at its points, and
    the share of the unlabeled points that score above its median (near 0 it stands out, so a
    lower threshold would find it; "ordinary" above ORDINARY_SHARE). A point without a score
    (NaN: no window holds it) scores below every other; a segment without any has None for
    these figures.

    The second segment below is missed, but scores above every unlabeled point: a lower
    threshold would find it.

    >>> reach = segment_reach([1, 9, 2, 3.5, 3, 1], [4] * 6, [0, 1, 0, 0, 0, 0],
    ...                       [0, 1, 0, 1, 1, 0])
    >>> [(r["start"], r["points"], r["flagged_share"], r["peak_over_threshold"],
    ...   r["unlabeled_above_median"], r["ordinary"]) for r in reach]
    [(1, 1, 1.0, 2.25, 0.0, False), (3, 2, 0.0, 0.875, 0.0, False)]
    """
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    unlabeled = np.sort(scores[~labels])
    reach = []
    for start, end in segments(labels):
        own = scores[start:end]
        median = float(np.median(own))
        above = len(unlabeled) - np.searchsorted(unlabeled, median, side="right")
        above_share = (float(above / max(len(unlabeled), 1)) if np.isfinite(own).any()
                       else None)
        threshold = (float(np.nanmedian(thresholds[start:end]))
                     if np.isfinite(thresholds[start:end]).any() else float("nan"))

        def over_threshold(value: float) -> float | None:
            finite = np.isfinite(value) and np.isfinite(threshold) and threshold > 0
            return float(value / threshold) if finite else None

        reach.append({"start": start, "end": end, "points": end - start,
                      "flagged_share": float(predicted[start:end].mean()),
                      "peak_over_threshold": over_threshold(float(own.max())),
                      "median_over_threshold": over_threshold(median),
                      "unlabeled_above_median": above_share,
                      "ordinary": None if above_share is None else above_share > ORDINARY_SHARE})
    return reach


def unflagged_in_found_segments(scores, predicted, labels) -> dict[str, int]:
    """The labeled points left unflagged inside segments the detector found (flagged at
    least one point of), and how many of them stand out: score above all but ORDINARY_SHARE
    of the unlabeled points, so that keeping the segment's alert open while the score stays
    that high would take them in. A point without a score (NaN) does not stand out.

    >>> unflagged_in_found_segments([1, 9, 5, 1, 2, 8], [0, 1, 0, 0, 0, 0],
    ...                             [0, 1, 1, 1, 0, 1])
    {'events': 2, 'standing_out': 1}
    """
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    predicted = np.asarray(predicted, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    unlabeled = scores[~labels]
    high = np.quantile(unlabeled, 1.0 - ORDINARY_SHARE) if unlabeled.size else np.inf
    in_found = np.zeros_like(labels)
    for start, end in segments(labels):
        in_found[start:end] = predicted[start:end].any()
    unflagged = in_found & ~predicted
    return {"events": int(unflagged.sum()), "standing_out": int((unflagged & (scores > high)).sum())}


def false_alarm_runs(predicted, labels) -> int:
    """Runs of flagged points that touch no labeled point: false alarms, counted once each."""
    labels = np.asarray(labels, dtype=bool)
    return sum(1 for start, end in segments(predicted) if not labels[start:end].any())


def best_f1_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, F1) of the threshold with the highest point-wise F1 on these labels.

    Uses the labels, so it is a ceiling (or a choice on a validation split), never an
    unsupervised result.

    >>> best_f1_threshold([0.1, 0.9, 0.8, 0.2], [0, 1, 1, 0])
    (0.8, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_positives = np.cumsum(labels[order])
    flagged = np.arange(1, len(scores) + 1)
    f1 = 2 * true_positives / (flagged + labels.sum())
    # Only cut between distinct scores: a threshold flags all points with equal scores.
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    f1 = np.where(last_of_tie, f1, -1.0)
    best = int(np.argmax(f1))
    return float(sorted_scores[best]), float(f1[best])


def hit_rate(contributions: np.ndarray, truth: Sequence[Sequence[int]],
             percent: float = 100.0) -> float:
    """HitRate@P%: mean share of each point's true metrics found among its top-ranked ones.

    For a point whose interpretation label lists G metrics, the top floor(P% * G) metrics by
    contribution are taken; the hit is |top & truth| / G.

    >>> hit_rate(np.array([[0.5, 0.3, 0.2]]), [[0, 2]], percent=100)
    0.5
    >>> hit_rate(np.array([[0.5, 0.3, 0.2]]), [[0, 2]], percent=150)
    1.0
    """
    hits = []
    for row, true_metrics in zip(contributions, truth):
        if not len(true_metrics):
            continue
        take = int(np.floor(percent / 100.0 * len(true_metrics)))
        top = np.argsort(-row, kind="stable")[:take]
        hits.append(len(set(top.tolist()) & set(true_metrics)) / len(true_metrics))
    return float(np.mean(hits)) if hits else float("nan")
