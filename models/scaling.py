"""Per-key baselines: each key's features on the scale of its own normal, capped.

A busy machine is not an anomaly for being busy: `KeyedScaler` centres and scales every
feature by the key's own training mean and spread, so a scorer sees "how unusual for this
key" (`transform`). The spread is the standard deviation, or, for a feature with a heavier
tail than a normal distribution, what its tail implies: around ``tail_quantile`` (0.999),
the quantile of absolute deviations from the mean divided by that quantile's value under a
normal distribution (3.29 at 0.999). A feature that spikes now and then in training (a
daily job's spike on machine-2-8 in SMD) would otherwise count its usual spike as dozens of
standard deviations, and every recurrence would alert; on a feature close to normal the two
agree. The tail's spread is averaged over tail levels one decade wide around
``tail_quantile`` (`TAIL_BAND_DECADES`), not read at one level: a 0.999 quantile is set by
the top handful of training windows.
An alert still says how far a metric is in plain standard deviations (`standardize`), the
unit people read. How *rare* that distance is for the key (`rarity`) is what explanations
rank metrics by: a metric whose usual spikes reach 8 standard deviations is less remarkable
at 8 than a steady one at 5 that never got there in training. Two guards keep one metric
from taking over the score:

- a scale floor: a feature that never moved in a key's training data (a constant metric)
  gets at least ``min_scale_share`` of how far the feature moves over all keys, so its first
  small move is not a division by (almost) zero. "How far" is the pooled 1-99% range; for a
  feature that sits on one value 99% of the time on every key (a window's minimum of a metric
  that is mostly 0), its full range; for one that never moved on any key, the widest of its
  metric's features (a metric's window features share its units). Without these fallbacks
  the unit is 1e-9, and a move of 0.04 reads as tens of millions of sd in an alert;
- a cap: the scorers' values are clipped to ``[-cap, cap]``, so a metric that drifts far out of its
  training range (machine-2-8's m06 in SMD) adds at most a bounded amount, however far it
  goes. Values that hit the cap are reported, metric by metric, as out of range.

Keys unseen in training are scaled by the statistics pooled over all training keys.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import NamedTuple, Sequence

import numpy as np


def rows_of_each_key(keys: Sequence) -> list[tuple[str, np.ndarray]]:
    """Each distinct key, sorted, with the positions of its rows in `keys`.

    One sort of the keys, where comparing every row with each key in turn would cost rows x
    keys: a batch keyed by card or device holds hundreds of keys.

    >>> [(key, rows.tolist()) for key, rows in rows_of_each_key(["b", "a", "b", "c"])]
    [('a', [1]), ('b', [0, 2]), ('c', [3])]
    """
    unique, inverse = np.unique(np.asarray(keys).astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    return list(zip(unique.tolist(), np.split(order, ends)))


# Tail probabilities at which each key's distances from its normal are kept, 1 to 1/1000 in
# 16 equal steps on a log scale: enough to rank metrics by rarity (on SMD, 17 points rank
# as well as every training window would), small enough for many keys.
RARITY_TAILS = np.logspace(0.0, -3.0, 17)
RARITY_DECADES = -np.log10(RARITY_TAILS)

# A feature's tail spread is read at TAIL_BAND_LEVELS tail probabilities spread evenly (on a
# log scale) over a band this many decades wide, centred on 1 - tail_quantile (0.00316 to
# 0.000316 at 0.999), and averaged. Read at one level, the spread is one order statistic (at
# 0.999, the 6th largest of the 5,700 training windows of an SMD machine), and detection
# followed its noise: on SMD, moving tail_quantile from 0.999 to 0.998 took the configured
# rule's mean point F1 from 0.548 to 0.520. scripts/scale_study.py has the figures.
TAIL_BAND_DECADES = 1.0
TAIL_BAND_LEVELS = 9
# A move from the recent level below this many sd is rounding, not a move (`_moves`).
NEGLIGIBLE_MOVE_SD = 1e-9


def check_tail_quantile(tail_quantile) -> None:
    """Raise ValueError unless `tail_quantile` is None or a quantile in (0.5, 1).

    >>> check_tail_quantile(99.9)
    Traceback (most recent call last):
    ...
    ValueError: must be a quantile between 0.5 and 1 (0.999 scales a heavy-tailed feature by its 99.9th percentile deviation), or None (null in the configuration) for the standard deviation alone; got 99.9.
    """
    if tail_quantile is None:
        return
    if isinstance(tail_quantile, bool) or not isinstance(tail_quantile, (int, float)) or not (
            0.5 < tail_quantile < 1):
        raise ValueError(f"must be a quantile between 0.5 and 1 (0.999 scales a heavy-tailed "
                         f"feature by its 99.9th percentile deviation), or None (null in the "
                         f"configuration) for the standard deviation alone; got {tail_quantile!r}.")


class KeyStats(NamedTuple):
    """One key's normal, per feature."""
    center: np.ndarray  # the training mean
    sd: np.ndarray      # the standard deviation, floored
    scale: np.ndarray   # the larger of sd and the spread the tail implies


class KeyedScaler:
    """Per-key standardisation with a tail-aware scale, a scale floor and a cap.

    >>> X = np.array([[10.0], [14.0], [100.0], [120.0]])
    >>> scaler = KeyedScaler(cap=5.0, min_key_rows=2).fit(X, ["a", "a", "b", "b"])
    >>> scaler.transform(np.array([[14.0], [120.0]]), ["a", "b"]).ravel().tolist()
    [1.0, 1.0]

    A feature that is 0 but for a spike in 5 of 1000 windows: the spike is 14.1 standard
    deviations out, and its tail puts it at 3.3 for the scorers (about a normal
    distribution's 99.9% point).

    >>> X = np.array([[0.0]] * 995 + [[10.0]] * 5)
    >>> scaler = KeyedScaler(min_key_rows=2).fit(X, ["a"] * 1000)
    >>> spike = np.array([[10.0]])
    >>> scaler.standardize(spike, ["a"]).round(1).item(), scaler.transform(spike, ["a"]).round(1).item()
    (14.1, 3.3)
    >>> [values.round(1).item() for values in scaler.transform_and_standardize(spike, ["a"])]
    [3.3, 14.1]

    A spike in 2 of 1000 windows is at the rare end of the band of tail levels (one in 300
    to one in 3,000), so its tail counts for part of the spread: 5.2, where the 0.999
    quantile alone (a band 0 decades wide) says 3.3.

    >>> X = np.array([[0.0]] * 998 + [[10.0]] * 2)
    >>> [KeyedScaler(min_key_rows=2, tail_band_decades=decades).fit(X, ["a"] * 1000)
    ...  .transform(spike, ["a"]).round(1).item() for decades in (1.0, 0.0)]
    [5.2, 3.3]

    A window's minimum that was 0 in all training, and its mean (same metric, ``groups``),
    which moved: the minimum's floor is 1% of the mean's range, 0.01.

    >>> X = np.array([[0.0, 0.0], [0.0, 1.0]] * 20)
    >>> KeyedScaler(min_key_rows=2).fit(X, ["a"] * 40, groups=["m", "m"]).floor_.tolist()
    [0.01, 0.01]
    """

    def __init__(self, cap: float = 10.0, min_scale_share: float = 0.01,
                 min_key_rows: int = 30, tail_quantile: float | None = 0.999,
                 tail_band_decades: float = TAIL_BAND_DECADES):
        check_tail_quantile(tail_quantile)
        if isinstance(tail_band_decades, bool) or not isinstance(
                tail_band_decades, (int, float)) or not 0 <= tail_band_decades <= 2:
            raise ValueError(f"tail_band_decades must be between 0 (the tail read at "
                             f"tail_quantile alone) and 2; got {tail_band_decades!r}.")
        self.cap = cap
        self.min_scale_share = min_scale_share
        self.min_key_rows = min_key_rows
        self.tail_quantile = tail_quantile
        self.tail_band_decades = tail_band_decades

    def fit(self, X: np.ndarray, keys: Sequence, groups: Sequence | None = None,
            levels: np.ndarray | None = None) -> "KeyedScaler":
        """`groups` names each column's group of columns in the same units (its metric);
        without it, every column is a group of its own. `levels`, the same shape as `X`:
        each value's recent level (NaN where a column has none), for `recent_rarity`."""
        X = np.asarray(X, dtype=np.float64)
        self.floor_ = np.maximum(self.min_scale_share * self._spread(X, groups), 1e-9)
        self.pooled_ = self._stats(X)
        key_rows = [(key, rows) for key, rows in rows_of_each_key(keys)
                    if len(rows) >= self.min_key_rows]
        self.per_key_ = {key: self._stats(X[rows]) for key, rows in key_rows}
        # Rarity's quantiles as one array, level by level over the keys (the pooled ones
        # last, at len(per_key_)), so `rarity` reads a level for every row with one index.
        self.key_index_ = {key: i for i, (key, _) in enumerate(key_rows)}
        self.far_quantiles_ = self._tables(
            [self._far_quantiles(X[rows], self.per_key_[key]) for key, rows in key_rows]
            + [self._far_quantiles(X, self.pooled_)])
        self.recent_quantiles_ = None
        if levels is not None:
            moves = self._moves(X, levels, keys)
            self.recent_quantiles_ = self._tables(
                [self._quantiles_of(moves[rows]) for _, rows in key_rows]
                + [self._quantiles_of(moves)])
        return self

    @staticmethod
    def _tables(per_key: list[np.ndarray]) -> np.ndarray:
        """Each key's (levels x features) table (the pooled one last, at len(per_key_)) as
        one array, level by level over the keys, so a level is read for every row with one
        index."""
        return np.ascontiguousarray(np.stack(per_key).transpose(1, 0, 2))

    @staticmethod
    def _spread(X: np.ndarray, groups: Sequence | None) -> np.ndarray:
        """How far each column moves over all keys (see the module docstring)."""
        spread = np.nanquantile(X, 0.99, axis=0) - np.nanquantile(X, 0.01, axis=0)
        spread = np.where(spread > 0, spread, np.nanmax(X, axis=0) - np.nanmin(X, axis=0))
        if groups is None:
            return spread
        groups = np.asarray(groups).astype(str)
        widest = {group: spread[groups == group].max() for group in np.unique(groups)}
        return np.where(spread > 0, spread, [widest[group] for group in groups])

    def _stats(self, X: np.ndarray) -> KeyStats:
        center = np.nanmean(X, axis=0)
        sd = np.maximum(np.nanstd(X, axis=0), self.floor_)
        scale = sd
        if self.tail_quantile is not None:
            scale = np.maximum(sd, self._tail_spread(np.abs(X - center)))
        return KeyStats(center, sd, scale)

    def _tail_spread(self, distances: np.ndarray) -> np.ndarray:
        """Per column, the standard deviation a normal distribution would need to reach the
        column's tail: at each tail probability p of the band (`TAIL_BAND_DECADES`), its
        (1 - p) quantile of `distances` over a normal's, averaged over the band."""
        half_width = self.tail_band_decades / 2.0
        levels = TAIL_BAND_LEVELS if half_width > 0 else 1
        # Capped at 0.5 so that a low tail_quantile keeps every level above the median.
        tails = np.minimum((1.0 - self.tail_quantile)
                           * np.logspace(half_width, -half_width, levels), 0.5)
        normal = np.array([NormalDist().inv_cdf(1.0 - p / 2.0) for p in tails])
        quantiles = np.nanquantile(distances, 1.0 - tails, axis=0)
        return np.mean(quantiles / normal[:, np.newaxis], axis=0)

    @classmethod
    def _far_quantiles(cls, X: np.ndarray, stats: KeyStats) -> np.ndarray:
        """(len(RARITY_TAILS) x features): the distance from the mean, in sd, that a share
        RARITY_TAILS of the rows reach or pass."""
        return cls._quantiles_of(np.abs(X - stats.center) / stats.sd)

    @staticmethod
    def _quantiles_of(distance: np.ndarray) -> np.ndarray:
        """(len(RARITY_TAILS) x features): the distance a share RARITY_TAILS of the rows
        reach or pass."""
        return np.nan_to_num(np.nanquantile(distance, 1.0 - RARITY_TAILS, axis=0))

    def _moves(self, X: np.ndarray, levels: np.ndarray, keys: Sequence) -> np.ndarray:
        """How far each value is from its recent level, in its key's sd; 0 where it has no
        level, and where the distance is rounding (the job's running sums and the offline
        rolling ones differ in the last bits, and a metric that did not move must not be
        rare in one and not the other)."""
        levels = np.asarray(levels, dtype=np.float64)
        unique, key_of_row = np.unique(np.asarray(keys).astype(str), return_inverse=True)
        sd = np.stack([self.per_key_.get(key, self.pooled_).sd for key in unique])[key_of_row]
        distance = np.abs(np.nan_to_num(np.asarray(X, dtype=np.float64) - levels)) / sd
        return np.where(distance > NEGLIGIBLE_MOVE_SD, distance, 0.0)

    def known(self, key: str) -> bool:
        return str(key) in self.per_key_

    def _divided(self, X: np.ndarray, keys: Sequence, *units: str) -> list[np.ndarray]:
        """Each value's distance from its key's mean in each of the key's `units` (KeyStats
        fields), one array per unit, from one pass over the keys."""
        X = np.asarray(X, dtype=np.float64)
        unique, key_of_row = np.unique(np.asarray(keys).astype(str), return_inverse=True)
        stats = [self.per_key_.get(key, self.pooled_) for key in unique]
        # Each distinct key's statistics once, then spread to its rows by one index.
        distance = X - np.stack([s.center for s in stats])[key_of_row]
        return [distance / np.stack([getattr(s, unit) for s in stats])[key_of_row]
                for unit in units]

    def standardize(self, X: np.ndarray, keys: Sequence) -> np.ndarray:
        """Each value in standard deviations of its key's normal, not capped: how far out a
        metric is, which the explanations rank by and the alerts report."""
        return self._divided(X, keys, "sd")[0]

    def transform(self, X: np.ndarray, keys: Sequence) -> np.ndarray:
        """Each value in its key's spread (tail-aware), clipped to the cap: what the scorers
        see."""
        return np.clip(self._divided(X, keys, "scale")[0], -self.cap, self.cap)

    def transform_and_standardize(self, X: np.ndarray, keys: Sequence
                                  ) -> tuple[np.ndarray, np.ndarray]:
        """(`transform`, `standardize`) of the same values, reading each key's statistics
        once: a window explained needs both."""
        scaled, deviations = self._divided(X, keys, "scale", "sd")
        return np.clip(scaled, -self.cap, self.cap), deviations

    def rarity(self, deviations: np.ndarray, keys: Sequence) -> np.ndarray:
        """How rare each of `standardize`'s deviations is for its key, in decades: -log10 of
        the share of the key's training windows at least as far from normal, read off
        RARITY_TAILS (so in steps of 3/16, from 0 to 3: one window in a thousand or rarer).
        A missing value is not rare.

        A feature that spikes to 10 in 5% of training windows, and one that only ever
        moved between -1 and 1: the spike is further out in sd, the move to 4 rarer.

        >>> X = np.column_stack([[10.0] * 50 + [0.0] * 950, np.tile([-1.0, 1.0], 500)])
        >>> scaler = KeyedScaler(min_key_rows=2).fit(X, ["a"] * 1000)
        >>> deviations = scaler.standardize(np.array([[10.0, 4.0]]), ["a"])
        >>> deviations.round(2).tolist(), scaler.rarity(deviations, ["a"]).round(2).tolist()
        ([[4.36, 4.0]], [[1.12, 3.0]])
        """
        distance = np.abs(np.nan_to_num(np.asarray(deviations, dtype=np.float64)))
        return self._decades(self.far_quantiles_, distance, keys)

    def recent_rarity(self, X: np.ndarray, levels: np.ndarray, keys: Sequence) -> np.ndarray:
        """How rare each value's move from its recent level (`levels`, as in `fit`) is for
        its key, in decades, against the training windows' moves from theirs; read as
        `rarity` reads distances from the key's normal.

        A metric that sat at 0 and one that stepped between 0 and 2 every window in
        training: both are at 2 now, but only the first just got there.

        >>> X = np.column_stack([np.zeros(1000), np.tile([0.0, 2.0], 500)])
        >>> levels = np.column_stack([np.zeros(1000), np.tile([2.0, 0.0], 500)])
        >>> scaler = KeyedScaler(min_key_rows=2).fit(X, ["a"] * 1000, levels=levels)
        >>> now = np.array([[2.0, 2.0]])
        >>> scaler.recent_rarity(now, np.array([[0.0, 0.0]]), ["a"]).round(2).tolist()
        [[3.0, 0.0]]
        """
        if self.recent_quantiles_ is None:
            raise ValueError("this scaler was fitted without recent levels; fit it with "
                             "`levels` to read how rare a move from them is.")
        return self._decades(self.recent_quantiles_, self._moves(X, levels, keys), keys)

    def _decades(self, tables: np.ndarray, distance: np.ndarray, keys: Sequence) -> np.ndarray:
        """Each distance's rarity for its key in decades, read off `tables` (`_tables`)."""
        unique, key_of_row = np.unique(np.asarray(keys).astype(str), return_inverse=True)
        pooled = len(self.per_key_)
        row_key = np.array([self.key_index_.get(key, pooled) for key in unique])[key_of_row]
        # How many of the key's quantiles lie strictly below: the rarest tail passed.
        passed = np.zeros(distance.shape, dtype=np.int64)
        for level in tables:
            passed += level[row_key] < distance
        return np.where(passed > 0, RARITY_DECADES[np.maximum(passed - 1, 0)], 0.0)

    def at_cap(self, Z: np.ndarray) -> np.ndarray:
        """Which of `transform`'s values sit at the cap: out of the key's training range."""
        return np.abs(Z) >= self.cap
