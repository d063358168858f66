"""What else might lift point F1 on SMD, and why none of it is the default: the measurement
behind the README's "Where this falls short" list of alternatives.

    bin/streamad python scripts/alternatives_study.py   # about 1 minute; prints the table
                                                        # and writes models/results/smd/
                                                        # alternatives_study.md

Each row changes one thing in the configured detector (PCA reconstruction error on the window
features, tail-aware per-key scale, cap, a multiple of each key's median training score) and
keeps the rest: the score, the scorer, the features or the window. Everything else is the
product's code (windows, features, scaling, the evaluation's minute-by-minute decisions). The
threshold stays a multiple of each key's median training score, and each row gives:

- the mean point F1 at the configured multiple;
- the best multiple in sample (of a wider range than `tune`'s, as some scores want 3-6 x),
  its mean F1 and its F1 per key;
- the held-out F1: leave one key out, the multiple chosen on the other keys (as `tune`);
- the label-tuned ceiling, its mean and per key: the best threshold per key on the whole
  test, which says whether the change ranks the labeled minutes higher at all.

A second table keeps the configured score and replaces the threshold with rules that follow
each key's test stream instead of its train half: a fixed share of the key's test windows
(with hindsight, as no streaming rule could), and a z-score of the window's score against
the key's scores of the days before it (causal, the "anomaly likelihood" kind of rule). Its
fifth row keeps the train half's multiple but holds it: once a window passes the multiple, the
key's windows stay flagged while their score stays above a share of it (hysteresis, the
"keep firing until it has clearly recovered" of alerting rules). The rows after it raise the
multiple when the key's recent scores run high: the threshold is the larger of the multiple
and a factor times a quantile of the key's scores over the trailing days. The last rows put
the threshold at the natural break in the key's own scores: where its highest scores split
best into two groups (Otsu's criterion, as image thresholding uses), which needs no multiple
at all.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.mixture import GaussianMixture
from sklearn.neural_network import MLPRegressor

from models.detector import DetectorSettings
from models.evaluation import best_f1_threshold, precision_recall_f1
from models.scorers import PCAScorer
from models.tuning import best_candidate, leave_one_key_out
from streamad.config import JobConfig
from streamad.evaluate import WindowedRun, points_of
from study_report import start_study, study_arguments

MULTIPLES = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200)
# Per metric, the scorer's summed contributions count in full up to about this much and
# logarithmically beyond, so that one metric far out weighs less than many metrics out.
METRIC_SOFT_CAP = 25.0
# The Gaussian mixture in the PCA subspace: its components, and how far above 0 its lowest
# training score is put.
GMM_COMPONENTS = 4
GMM_FLOOR = 1e-3
# The autoencoder: a small neural network trained to give back its input through a narrow
# middle layer, the non-linear kin of the PCA's reconstruction.
AUTOENCODER_LAYERS = (64, 16, 64)
# The forecast: each window's scaled features predicted from its key's previous window's by
# a ridge regression of this strength.
FORECAST_RIDGE_ALPHA = 1.0
# The share of the highest-scoring training windows left out of the trimmed PCA's refit.
TRIMMED_SHARE = 0.01
# The time-of-day profile: each key's median training feature per bin of this many seconds.
HOUR_OF_DAY_BIN_S = 3600
# The stream-following thresholds' parameters.
TEST_SHARES = (0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.15)
TRAILING_DAYS = (1, 3, 7)
TRAILING_Z = (2, 3, 4, 5, 6)
# The held threshold (hysteresis): a window above a multiple of the key's median training
# score starts a run of flagged windows, which goes on while the score stays above this share
# of that multiple. A share of 1 is the plain rule.
HELD_MULTIPLES = (30, 40, 50, 60, 80, 100)
HELD_SHARES = (1.0, 0.5, 0.3, 0.2, 0.1)
# The raised threshold: the larger of a floor (a multiple of the key's median training score)
# and a factor times a quantile of its scores over the trailing days. A factor of 0 is the
# plain rule.
RAISED_FLOORS = (5, 8, 10, 15, 20, 30, 40, 50)
RAISED_STATISTICS = (0.5, 0.9, 0.99)
RAISED_FACTORS = (0, 1.5, 2, 3, 5)
RAISED_DAYS = (1, 3)
# The natural break: the threshold between the two groups (Otsu's criterion, over this many
# histogram bins) of the key's log scores above a quantile of them, or above the quantile
# whose split separates them best, over its whole test (with hindsight) or over its last days
# of scores (causal, recomputed every hour).
BREAK_QUANTILES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
BREAK_BINS = 128
MOST_SEPARABLE = "the quantile whose split is most separable"
BREAK_DAYS = (7, 14)


@dataclasses.dataclass
class Scores:
    """One variant's score of every train window and every test window of a run."""
    run: WindowedRun
    train: np.ndarray
    test: np.ndarray

    def keys(self, train: bool) -> np.ndarray:
        """The key of each train (or test) window, in the order of the scores."""
        run = self.run
        part = run.is_train if train else ~run.is_train
        return run.aggregates.loc[part, run.config.schema.key_field].astype(str).to_numpy()


def multiple_table(scores: Scores) -> tuple[pd.DataFrame, list[float]]:
    """Point F1 (multiples x keys) with each key's threshold at a multiple of the median of
    its training windows' scores, and each key's label-tuned ceiling."""
    run = scores.run
    test_windows = run.aggregates.loc[~run.is_train]
    points = points_of(run.data, test_windows,
                       pd.DataFrame({"multiple": over_key_medians(scores).test},
                                    index=test_windows.index), run.config)
    table = flagged_f1(run, points, "multiple", MULTIPLES, [f"{m} x median" for m in MULTIPLES],
                       lambda multiple_of_median, multiple: multiple_of_median > multiple)
    ceilings = [best_f1_threshold(np.nan_to_num(points[key]["multiple"].to_numpy()), labels)[1]
                for key, labels in run.labels.items()]
    return table, ceilings


def flagged_f1(run: WindowedRun, points: dict, column: str, levels, names: list[str],
               flagged: Callable[[np.ndarray, float], np.ndarray]) -> pd.DataFrame:
    """Point F1 (levels, under `names`, x keys) of flagging each key's minutes where
    `flagged(values, level)` holds, `values` being the minutes' `column` in `points` (-inf
    for a minute no window holds)."""
    table = pd.DataFrame(index=names, columns=list(run.labels), dtype=float)
    for key, labels in run.labels.items():
        values = np.nan_to_num(points[key][column].to_numpy(), nan=-np.inf)
        for level, name in zip(levels, names):
            table.at[name, key] = precision_recall_f1(flagged(values, level), labels)["f1"]
    return table


def chosen_in_sample_and_held_out(table: pd.DataFrame) -> tuple[str, float, float, str]:
    """The best row of an F1 table (levels x keys) in sample, its mean F1, the mean held-out
    F1 when leaving one key out chooses, and the best row's F1 per key as text."""
    best, best_f1 = best_candidate(table)
    held_out = float(np.mean([r.held_out_f1 for r in leave_one_key_out(table)]))
    return best, best_f1, held_out, " ".join(f"{f1:.2f}" for f1 in table.loc[best])


def fitted(run: WindowedRun, settings: DetectorSettings, **features) -> Scores:
    """The scores of a detector with `settings` fitted on `run`'s train windows; `features`
    are `WindowedRun.score`'s, to score other features."""
    detector, scored, _ = run.score(settings, **features)
    return Scores(run, detector.training_scores_, scored["score"].to_numpy())


def per_key_smoothed(scores: Scores, smooth: Callable[[pd.Series], pd.Series]) -> Scores:
    """Each key's window scores, train and test apart, passed in time order through `smooth`
    (causal: a window sees itself and the windows before it)."""
    run = scores.run
    key_field = run.config.schema.key_field

    def along_time(part: np.ndarray, values: np.ndarray) -> np.ndarray:
        windows = run.aggregates.loc[part, [key_field, "window_start_ms"]]
        frame = windows.assign(score=values).sort_values([key_field, "window_start_ms"])
        smoothed = frame.groupby(key_field)["score"].transform(smooth)
        return smoothed.reindex(windows.index).to_numpy()

    return Scores(run, along_time(run.is_train, scores.train),
                  along_time(~run.is_train, scores.test))


def over_key_medians(scores: Scores) -> Scores:
    """Each window's score over its key's median training score: a multiple of the median."""
    train_keys, test_keys = scores.keys(train=True), scores.keys(train=False)
    train, test = scores.train.copy(), scores.test.copy()
    for key in np.unique(train_keys):
        median = np.median(scores.train[train_keys == key])
        train[train_keys == key] /= median
        test[test_keys == key] /= median
    return Scores(scores.run, train, test)


class Variants:
    """The configured detector fitted once on a run, and the variants built from its parts."""

    def __init__(self, run: WindowedRun):
        self.run = run
        self.settings = run.config.model.detector_settings().for_scores_only()
        self.detector, scored, _ = run.score(self.settings)
        self.configured = Scores(run, self.detector.training_scores_,
                                 scored["score"].to_numpy())
        scaled = []
        for train in (True, False):
            part = run.is_train if train else ~run.is_train
            features = run.features.loc[part, self.detector.feature_names].to_numpy(float)
            scaled.append(self.detector.scaler_.transform(features,
                                                          self.configured.keys(train)))
        self.train_scaled, self.test_scaled = scaled

    def _of(self, score: Callable[[np.ndarray], np.ndarray]) -> Scores:
        return Scores(self.run, score(self.train_scaled), score(self.test_scaled))

    def hotelling(self) -> Scores:
        """Hotelling's T²: the distance within the PCA's subspace, which the reconstruction
        error does not see (a move along the normal correlations)."""
        pca = self.detector.pooled_scorer_.pca_
        return self._of(lambda Z: (pca.transform(Z) ** 2 / pca.explained_variance_).sum(axis=1))

    def gaussian_mixture(self) -> Scores:
        """The negative log-likelihood of a Gaussian mixture fitted in the PCA's subspace to
        the training windows: T² with more than one normal (a busy and a quiet regime, say),
        the issue's GMM log-likelihood scorer. Shifted so its lowest training score is
        GMM_FLOOR above 0, for a multiple of the median to mean something."""
        pca = self.detector.pooled_scorer_.pca_
        mixture = GaussianMixture(GMM_COMPONENTS, covariance_type="full", reg_covar=1e-3,
                                  random_state=self.settings.random_state
                                  ).fit(pca.transform(self.train_scaled))
        lowest = (-mixture.score_samples(pca.transform(self.train_scaled))).min()
        return self._of(lambda Z: -mixture.score_samples(pca.transform(Z)) - lowest + GMM_FLOOR)

    def autoencoder(self) -> Scores:
        """The squared reconstruction error of an autoencoder (an MLP trained to give back
        the scaled features through a narrow middle layer): the PCA's reconstruction, but
        able to bend along a non-linear normal."""
        network = MLPRegressor(hidden_layer_sizes=AUTOENCODER_LAYERS, early_stopping=True,
                               random_state=self.settings.random_state
                               ).fit(self.train_scaled, self.train_scaled)
        return self._of(lambda Z: ((Z - network.predict(Z)) ** 2).sum(axis=1))

    def forecast_residual(self) -> Scores:
        """The squared error of forecasting each window's scaled features from its key's
        previous window (a ridge regression fitted on the training windows): what a
        window does that its key's last one did not announce, where the reconstruction
        error sees each window alone."""
        previous_train = self._previous_of_key(self.run.is_train, self.train_scaled)
        previous_test = self._previous_of_key(~self.run.is_train, self.test_scaled)
        ridge = Ridge(alpha=FORECAST_RIDGE_ALPHA).fit(previous_train, self.train_scaled)
        return Scores(self.run,
                      ((self.train_scaled - ridge.predict(previous_train)) ** 2).sum(axis=1),
                      ((self.test_scaled - ridge.predict(previous_test)) ** 2).sum(axis=1))

    def _previous_of_key(self, part: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        """Each window's key's previous window's row of `scaled` (the rows of the windows
        in `part`); a key's first window is its own previous one."""
        windows = self.run.aggregates.loc[part]
        keys = windows[self.run.config.schema.key_field].astype(str).to_numpy()
        in_time = np.lexsort((windows["window_start_ms"].to_numpy(), keys))
        before = np.concatenate([in_time[:1], in_time[:-1]])
        first_of_key = np.r_[True, keys[in_time][1:] != keys[in_time][:-1]]
        before[first_of_key] = in_time[first_of_key]
        previous = np.empty_like(scaled)
        previous[in_time] = scaled[before]
        return previous

    def error_plus(self, other: Scores) -> Scores:
        """The reconstruction error and `other`, each over its key's median."""
        error, other = over_key_medians(self.configured), over_key_medians(other)
        return Scores(self.run, error.train + other.train, error.test + other.test)

    def metric_soft_cap(self) -> Scores:
        detector = self.detector

        def score(Z):
            per_metric = detector.per_metric(detector.pooled_scorer_.feature_contributions(Z))
            return (METRIC_SOFT_CAP * np.log1p(per_metric / METRIC_SOFT_CAP)).sum(axis=1)
        return self._of(score)

    def trimmed_pca(self) -> Scores:
        first = self.detector.pooled_scorer_.score_samples(self.train_scaled)
        kept = first <= np.quantile(first, 1.0 - TRIMMED_SHARE)
        refit = PCAScorer(variance=self.settings.pca_variance).fit(self.train_scaled[kept])
        return self._of(refit.score_samples)

    def with_settings(self, **changes) -> Scores:
        return fitted(self.run, dataclasses.replace(self.settings, **changes))

    def lower_of_pca_and_knn(self, knn: Scores) -> Scores:
        pca, knn = over_key_medians(self.configured), over_key_medians(knn)
        return Scores(self.run, np.minimum(pca.train, knn.train),
                      np.minimum(pca.test, knn.test))

    def with_hour_of_day_deviation(self) -> Scores:
        """The configured features, and beside each feature other than a std its deviation
        from the key's median training value in the same hour of the day: a daily pattern
        (a nightly job, business hours) becomes part of each key's normal."""
        run = self.run
        names = self.detector.feature_names
        features = run.features[names].astype(float)
        keys = run.aggregates[run.config.schema.key_field].astype(str)
        hour = (run.aggregates["window_start_ms"] // 1000 % 86400 // HOUR_OF_DAY_BIN_S
                ).rename("hour")
        profile = features[run.is_train].groupby([keys[run.is_train],
                                                  hour[run.is_train]]).median()
        expected = profile.reindex(pd.MultiIndex.from_arrays([keys, hour])).to_numpy()
        levels = [name for name in names if not name.endswith("__std")]
        deviation = (features[levels] - np.nan_to_num(expected[:, [names.index(name)
                                                                    for name in levels]])
                     ).add_suffix("__vs_hour")
        combined = pd.concat([features, deviation], axis=1)
        return fitted(run, self.settings, features=combined,
                      feature_names=list(combined.columns))

    def with_statistics(self, statistics: tuple[str, ...]) -> Scores:
        return fitted(self.run.with_statistics(statistics), self.settings)


def each_key_in_time(scores: Scores):
    """Per key: the positions of its test windows in time order, and its train and test
    windows' scores in time order."""
    run = scores.run
    train_keys, test_keys = scores.keys(train=True), scores.keys(train=False)
    train_starts = run.aggregates.loc[run.is_train, "window_start_ms"].to_numpy()
    test_starts = run.aggregates.loc[~run.is_train, "window_start_ms"].to_numpy()
    for key in np.unique(test_keys):
        in_test = np.flatnonzero(test_keys == key)
        in_test = in_test[np.argsort(test_starts[in_test])]
        in_train = np.flatnonzero(train_keys == key)
        train_in_time = scores.train[in_train[np.argsort(train_starts[in_train])]]
        yield in_test, train_in_time, scores.test[in_test]


def before_each(train_in_time: np.ndarray, test_in_time: np.ndarray, windows: int,
                aggregate: Callable, min_periods: int = 1) -> np.ndarray:
    """For each test window, `aggregate` of the key's `windows` windows before it (the train
    half's last windows before the first test window): causal."""
    series = pd.Series(np.concatenate([train_in_time[-windows:], test_in_time]))
    before = aggregate(series.rolling(windows, min_periods=min_periods)).shift(1)
    return before.iloc[-len(test_in_time):].to_numpy()


def stream_threshold_tables(scores: Scores) -> dict[str, pd.DataFrame]:
    """Point F1 (parameters x keys) of the threshold rules that follow each key's test
    scores: a share of its test windows flagged, chosen with hindsight (the windows above
    the key's test quantile), and the log score's z against the key's trailing days (its
    last training windows before the first test window), flagged above a z."""
    run = scores.run
    windows_a_day = 86400 // run.config.window.effective_slide_s
    test_windows = run.aggregates.loc[~run.is_train]

    rank_in_test = np.empty(len(test_windows))
    trailing_z = {days: np.empty(len(test_windows)) for days in TRAILING_DAYS}
    for in_test, train_in_time, test_scores in each_key_in_time(scores):
        # The share of the key's test windows that score below each one.
        rank_in_test[in_test] = np.searchsorted(np.sort(test_scores), test_scores,
                                                side="left") / len(test_scores)
        train_log, test_log = np.log1p(train_in_time), np.log1p(test_scores)
        for days in TRAILING_DAYS:
            before = before_each(train_log, test_log, windows_a_day * days,
                                 lambda rolling: rolling.agg(["mean", "std"]), min_periods=2)
            trailing_z[days][in_test] = (test_log - before[:, 0]) / before[:, 1]

    columns = {"rank": rank_in_test}
    columns.update({f"z{days}": z for days, z in trailing_z.items()})
    points = points_of(run.data, test_windows, pd.DataFrame(columns, index=test_windows.index),
                       run.config)
    tables = {}
    for name, column, parameters, flagged in (
            ("the key's top share of its test windows, with hindsight", "rank",
             TEST_SHARES, lambda values, share: values >= 1.0 - share),
            *((f"z of the log score against the key's last {days} "
               f"day{'s' if days > 1 else ''}, causal",
               f"z{days}", TRAILING_Z, lambda values, z: values > z) for days in TRAILING_DAYS)):
        tables[name] = flagged_f1(run, points, column, parameters,
                                  [f"{p:g}" for p in parameters], flagged)
    return tables


def held_flags(multiples_of_median: np.ndarray, multiple: float, share: float) -> np.ndarray:
    """One key's windows in time order, flagged above `multiple` and then for as long as
    they stay above `share` of it.

    >>> held_flags(np.array([1.0, 5.0, 3.0, 2.0, 1.0, 3.0]), 4.0, 0.5).tolist()
    [False, True, True, False, False, False]
    """
    flagged = np.empty(len(multiples_of_median), dtype=bool)
    held = False
    for i, value in enumerate(multiples_of_median):
        held = value > multiple or (held and value > share * multiple)
        flagged[i] = held
    return flagged


def held_threshold_table(scores: Scores) -> pd.DataFrame:
    """Point F1 ((multiple, share) x keys) of the held threshold, `held_flags` over each
    key's test windows."""
    run = scores.run
    test_windows = run.aggregates.loc[~run.is_train]
    multiples = over_key_medians(scores).test
    parameters = [(multiple, share) for multiple in HELD_MULTIPLES for share in HELD_SHARES]
    names = [f"{multiple} x, held to {share:g}" for multiple, share in parameters]
    flagged = np.zeros((len(test_windows), len(parameters)))
    for in_test, _, _ in each_key_in_time(scores):
        for column, (multiple, share) in enumerate(parameters):
            flagged[in_test, column] = held_flags(multiples[in_test], multiple, share)
    return flags_f1(run, flagged, names)


def flags_f1(run: WindowedRun, flagged: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Point F1 (names x keys) of test-window flags (windows x names, 1 = flagged)."""
    test_windows = run.aggregates.loc[~run.is_train]
    points = points_of(run.data, test_windows,
                       pd.DataFrame(flagged, columns=names, index=test_windows.index),
                       run.config)
    return pd.concat([flagged_f1(run, points, name, [0.5], [name],
                                 lambda values, half: values > half) for name in names])


def raised_threshold_tables(scores: Scores) -> dict[int, pd.DataFrame]:
    """Point F1 ((floor, statistic, factor) x keys) of a threshold that rises with the key's
    recent scores: the larger of a multiple of its median training score (the floor) and a
    factor times a statistic of its scores over the trailing days (causal), one table per
    number of days. A factor of 0 is the plain multiple."""
    run = scores.run
    windows_a_day = 86400 // run.config.window.effective_slide_s
    multiples = over_key_medians(scores)
    test = multiples.test
    tables = {}
    for days in RAISED_DAYS:
        trailing = {statistic: np.empty(len(test)) for statistic in RAISED_STATISTICS}
        for in_test, train_in_time, test_in_time in each_key_in_time(multiples):
            for statistic in RAISED_STATISTICS:
                trailing[statistic][in_test] = before_each(
                    train_in_time, test_in_time, windows_a_day * days,
                    lambda rolling: rolling.quantile(statistic))
        parameters = [(floor, statistic, factor) for floor in RAISED_FLOORS
                      for statistic in RAISED_STATISTICS for factor in RAISED_FACTORS
                      if factor > 0 or statistic == RAISED_STATISTICS[0]]
        names = [f"{floor} x" if factor == 0 else
                 f"{floor} x, raised to {factor:g} x the trailing {statistic:g} quantile"
                 for floor, statistic, factor in parameters]
        flagged = np.stack([test > np.maximum(floor, factor * trailing[statistic])
                            for floor, statistic, factor in parameters], axis=1)
        tables[days] = flags_f1(run, flagged.astype(float), names)
    return tables


def natural_break(values: np.ndarray, bins: int = BREAK_BINS) -> tuple[float, float]:
    """The value that splits `values` into the two groups furthest apart for their sizes
    (Otsu's criterion: the largest between-group variance over a histogram's bin edges), and
    how cleanly: the between-group share of the variance (1 for two tight groups). Every
    edge in an empty gap between the groups splits them alike, and the lowest is taken: the
    top of the lower group.

    >>> cut, separability = natural_break(np.array([1.0, 1.1, 0.9, 1.0, 5.0, 5.2, 4.9]))
    >>> round(cut, 1), round(separability, 2)
    (1.1, 1.0)
    """
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)
    above = below[-1] - below
    mass_below = np.cumsum(counts * centres)
    mean_below = mass_below / np.maximum(below, 1)
    mean_above = (mass_below[-1] - mass_below) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2 / below[-1] ** 2
    best = int(np.argmax(between))
    return float(edges[best + 1]), float(between[best] / max(np.var(values), 1e-12))


def natural_breaks(log_scores: np.ndarray) -> list[float]:
    """The natural break of the scores above each of BREAK_QUANTILES, and last the one of
    those whose split is the most separable."""
    splits = [natural_break(log_scores[log_scores > np.quantile(log_scores, q)])
              for q in BREAK_QUANTILES]
    return [cut for cut, _ in splits] + [max(splits, key=lambda split: split[1])[0]]


def natural_break_tables(scores: Scores) -> dict[str, pd.DataFrame]:
    """Point F1 (quantiles x keys) of flagging the windows above the natural break in the
    key's log scores above their quantile: over all its test scores (with hindsight), and
    over its scores of the last days before each window, the train half's first (causal)."""
    run = scores.run
    windows_an_hour = 3600 // run.config.window.effective_slide_s
    windows_a_day = 24 * windows_an_hour
    names = [f"{q:g}" for q in BREAK_QUANTILES] + [MOST_SEPARABLE]
    hindsight = np.zeros((len(scores.test), len(names)))
    causal = {days: np.zeros_like(hindsight) for days in BREAK_DAYS}
    for in_test, train_in_time, test_in_time in each_key_in_time(scores):
        test_log = np.log(test_in_time)
        hindsight[in_test] = test_log[:, None] > np.array(natural_breaks(test_log))
        history = np.concatenate([np.log(train_in_time), test_log])
        for days, flagged in causal.items():
            for start in range(0, len(test_log), windows_an_hour):
                end = len(train_in_time) + start
                cuts = natural_breaks(history[max(0, end - days * windows_a_day):end])
                hour = slice(start, start + windows_an_hour)
                flagged[in_test[hour]] = test_log[hour, None] > np.array(cuts)
    tables = {"the natural break in the key's log scores above their quantile, over all its "
              "test scores, with hindsight": flags_f1(run, hindsight, names)}
    for days, flagged in causal.items():
        tables[f"the natural break in the key's log scores above their quantile, over its "
               f"last {days} days, causal"] = flags_f1(run, flagged, names)
    return tables


def with_window(run: WindowedRun, size_s: int, slide_s: int) -> Scores:
    config = run.config
    config = dataclasses.replace(config, window=dataclasses.replace(
        config.window, size_s=size_s, slide_s=slide_s))
    return fitted(WindowedRun.of(config, run.data), config.model.detector_settings().for_scores_only())


def _pca_with_median_multiple(config: JobConfig) -> None:
    model = config.model
    if model.kind != "pca" or model.threshold_method != "median_multiple":
        sys.exit(f"this study varies the PCA scorer with a median-multiple threshold; the "
                 f"configuration has {model.kind} with {model.threshold_method}. Set "
                 f"model.kind: pca and model.threshold_method: median_multiple.")


def main() -> None:
    study = start_study(study_arguments(__doc__, "models/results/smd/alternatives_study.md"),
                        check=_pca_with_median_multiple)
    config, data_dir, run, report = study.config, study.data_dir, study.run, study.report
    model = config.model
    variants = Variants(run)
    configured = f"{model.median_multiple:g} x median"
    if configured not in [f"{m} x median" for m in MULTIPLES]:
        sys.exit(f"model.median_multiple {model.median_multiple:g} is not among the study's "
                 f"multiples {MULTIPLES}.")
    keys = list(run.labels)
    say = report.say
    say(f"# Alternatives to the configured detector, on {data_dir}\n")
    say(f"Configured: PCA reconstruction error, cap {model.cap:g}, scale tail quantile "
        f"{model.scale_tail_quantile}, {configured}. Multiples tried: "
        f"{', '.join(map(str, MULTIPLES))}. Per key: {', '.join(keys)}.\n")
    say(f"| change | F1 at {configured} | best multiple | its F1 | per key | held-out F1 "
        "(leave one key out) | ceiling | per key |")
    say("|---|---|---|---|---|---|---|---|")

    def row(name: str, scores: Scores) -> None:
        table, ceilings = multiple_table(scores)
        best, best_f1, held_out, per_key = chosen_in_sample_and_held_out(table)
        say(f"| {name} | {table.loc[configured].mean():.3f} | {best.split(' ')[0]} x | "
            f"{best_f1:.3f} | {per_key} | {held_out:.3f} | {np.mean(ceilings):.3f} | "
            + " ".join(f"{c:.2f}" for c in ceilings) + " |")

    row("none (the configured detector)", variants.configured)
    say("| **the score** | | | | | | | |")
    hotelling, mixture = variants.hotelling(), variants.gaussian_mixture()
    row("Hotelling's T² in the PCA subspace instead", hotelling)
    row("reconstruction error + T², each over its key's median", variants.error_plus(hotelling))
    row(f"negative log-likelihood of a {GMM_COMPONENTS}-component Gaussian mixture in the "
        "PCA subspace instead", mixture)
    row("reconstruction error + that log-likelihood, each over its key's median",
        variants.error_plus(mixture))
    autoencoder = variants.autoencoder()
    row(f"reconstruction error of an autoencoder (MLP, layers "
        f"{'-'.join(map(str, AUTOENCODER_LAYERS))}) instead", autoencoder)
    row("reconstruction error + the autoencoder's, each over its key's median",
        variants.error_plus(autoencoder))
    forecast = variants.forecast_residual()
    row("error of forecasting each window from its key's previous one (ridge) instead",
        forecast)
    row("reconstruction error + that forecast error, each over its key's median",
        variants.error_plus(forecast))
    row(f"each metric's contributions soft-capped at {METRIC_SOFT_CAP:g}",
        variants.metric_soft_cap())
    row(f"PCA refitted without the top {TRIMMED_SHARE:.0%} of training windows",
        variants.trimmed_pca())
    row("mean of the window's score and the previous window's",
        per_key_smoothed(variants.configured, lambda s: s.rolling(2, min_periods=1).mean()))
    row("exponentially weighted mean of the scores (alpha 0.5)",
        per_key_smoothed(variants.configured, lambda s: s.ewm(alpha=0.5).mean()))
    say("| **the scorer** | | | | | | | |")
    knn = variants.with_settings(kind="knn")
    row("kNN (mean squared distance to 5 neighbours)", knn)
    row("lower of PCA and kNN, each over its key's median", variants.lower_of_pca_and_knn(knn))
    for variance in (0.8, 0.95):
        row(f"PCA keeping {variance:.0%} of the variance (configured "
            f"{model.pca_variance:.0%})", variants.with_settings(pca_variance=variance))
    say("| **the features** | | | | | | | |")
    statistics = tuple(config.features.statistics)
    for extra in ("range", "delta"):
        row(f"{', '.join(statistics)} and {extra}", variants.with_statistics(statistics + (extra,)))
    row("mean and std only", variants.with_statistics(("mean", "std")))
    row(f"the configured features and, std aside, each one's deviation from the key's "
        f"training median in the same {HOUR_OF_DAY_BIN_S // 60} minutes of the day",
        variants.with_hour_of_day_deviation())
    say("| **the window** | | | | | | | |")
    for size_s, slide_s in ((300, 300), (1200, 300)):
        row(f"{size_s // 60}-minute window sliding by {slide_s // 60} (configured "
            f"{config.window.size_s // 60} by {config.window.effective_slide_s // 60})",
            with_window(run, size_s, slide_s))

    multiples = over_key_medians(variants.configured)
    say("\nThe configured score, with a threshold that follows each key's test stream "
        "instead of a multiple of its median training score, and (last rows) with the "
        "multiple held while the score stays above a share of it, raised with the key's "
        "recent scores, or replaced by the natural break in the key's own scores. The share "
        "of each key's test minutes labeled anomalous: " + ", ".join(
            f"{key} {np.mean(labels):.1%}" for key, labels in run.labels.items())
        + ". Each key's median test window score, in multiples of its median training "
        "window score: " + ", ".join(
            f"{key} {np.median(multiples.test[multiples.keys(train=False) == key]):.1f}"
            for key in run.labels) + ".\n")
    say("| threshold rule | parameter chosen in sample | its F1 | per key | held-out F1 "
        "(leave one key out) | parameters tried |")
    say("|---|---|---|---|---|---|")
    rules = [(name, table, ", ".join(table.index))
             for name, table in stream_threshold_tables(variants.configured).items()]
    rules.append(("a multiple of the key's median training score, held while the score stays "
                  "above a share of it (hysteresis, causal)",
                  held_threshold_table(variants.configured),
                  f"multiples {', '.join(map(str, HELD_MULTIPLES))}, each with shares "
                  f"{', '.join(f'{share:g}' for share in HELD_SHARES)}"))
    for days, table in raised_threshold_tables(variants.configured).items():
        rules.append((f"a multiple of the key's median training score, raised to a factor "
                      f"times a quantile of its scores over the last {days} "
                      f"day{'s' if days > 1 else ''} (causal)", table,
                      f"floors {', '.join(map(str, RAISED_FLOORS))} x median; quantiles "
                      f"{', '.join(f'{q:g}' for q in RAISED_STATISTICS)}; factors "
                      f"{', '.join(f'{f:g}' for f in RAISED_FACTORS)}"))
    breaks = natural_break_tables(variants.configured)
    for name, table in breaks.items():
        rules.append((name, table, f"quantiles {', '.join(table.index)}"))
    for name, table, tried in rules:
        best, best_f1, held_out, per_key = chosen_in_sample_and_held_out(table)
        say(f"| {name} | {best} | {best_f1:.3f} | {per_key} | {held_out:.3f} | {tried} |")
    say(f"\nThe natural break above {MOST_SEPARABLE}, alone (no parameter to choose): "
        + "; ".join(f"{name.split(', ', 1)[1]} {table.loc[MOST_SEPARABLE].mean():.3f} ("
                    + " ".join(f"{f1:.2f}" for f1 in table.loc[MOST_SEPARABLE]) + ")"
                    for name, table in breaks.items()) + ".")
    report.write()


if __name__ == "__main__":
    main()
