"""Why the explanations' HitRate over all labeled minutes stays near 0.75, and what other
readings of rarity give: the measurement behind the README's "Where this falls short" words
on explanations, and behind the recent level's span (``model.explain_recent_windows``).

    bin/streamad python scripts/explanation_study.py   # about 1 minute; prints the tables
                                                       # and writes models/results/smd/
                                                       # explanation_study.md

The configured detector flags the windows and its explanation (rarity, by default) ranks the
metrics; its row is what `streamad evaluate` reports. The other rows rank the metrics of the
same windows by the study's own reading of rarity, so that one thing can change at a time:
for each level feature of a metric (a window's std and range left out, as the product does),
the share of the key's training windows at least as far from the key's normal, read off
every training window, in decades (-log10 of the share); a metric takes its rarest
feature's. The variants:

- the normal: the key's training mean (as the product), or its training median in the same
  hour of the day (a daily pattern made part of the key's normal), with the share among all
  the key's training windows or among those of the same hour; or the key's own recent level,
  the metric's mean over its windows of the last hours before this one (causal), with the
  share among the training windows as far from theirs: a metric that just moved outranks
  one that has sat as far out for days;
- the direction: the share of training windows as far out on the same side, not either side;
- persistence: the rarity averaged over the key's last windows (causal), alone or the larger
  of it and the window's own, so that a metric off its normal for an hour outranks one that
  is rare in one window; or the rarest of the key's last windows;
- companions: a metric's rarity (plain, and the move from its recent level) with a share of
  the mean rarity of the metrics that moved with it in training added, so that a group of
  metrics off their normal together outranks one metric alone; the correlation that makes
  a companion and the share are chosen by leaving one key out (a line under the table).

A second table looks at each key's longest labeled segment: how rare its labeled metrics are
on the mean through it, and how many other metrics are rarer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.features import SPREAD_STATISTICS
from streamad.evaluate import WindowedRun, explanation_hit_rates, points_of
from study_report import start_study, study_arguments

# The hour-of-day normal's bins.
HOUR_BIN_S = 3600
# Shares below this count as it: a key of SMD has about 5,700 training windows.
SHARE_FLOOR = 1e-4
# Within one rarity, the metric further out in standard deviations comes first; the weight
# keeps that from reordering two rarities (at most 50 sd x 1e-3 = 0.05 decades).
SD_TIE_BREAK = 1e-3
SD_TIE_CAP = 50.0
TRAILING_WINDOWS = (3, 6, 12)
# Companions: metrics whose window means correlate at least this much in training, and the
# weight of their mean rarity added to a metric's own.
COMPANION_CORRELATIONS = (0.7, 0.8, 0.9)
COMPANION_WEIGHTS = (0.5, 1.0)
# Companions are added to the plain rarity and the move from this span's recent level: the
# span the job's default configuration takes (jobs/default.yaml).
COMPANION_SPAN = 72
# The recent level's span: 1 hour, 6 hours and a day of windows at a 5-minute slide.
RECENT_LEVEL_WINDOWS = (12, 72, 288)


class StudyRarity:
    """Per test window and metric of a run, how rare the metric's distance from its key's
    normal is for the key, in decades, read off every training window."""

    def __init__(self, run: WindowedRun):
        self.run = run
        config = run.config
        self.metrics = list(config.schema.metric_fields)
        self.levels = [s for s in config.features.statistics if s not in SPREAD_STATISTICS]
        self.keys = run.aggregates[config.schema.key_field].astype(str).to_numpy()
        self.hours = (run.aggregates["window_start_ms"].to_numpy() // 1000 % 86400
                      // HOUR_BIN_S)
        self.test_rows = np.flatnonzero(~run.is_train)

    def decades(self, hourly_normal: bool = False, hourly_tail: bool = False,
                signed: bool = False, sd_tie_break: float = SD_TIE_BREAK,
                recent_level: pd.DataFrame | None = None) -> np.ndarray:
        """(test windows x metrics) rarity in decades, the normal and the tail as named, and
        `sd_tie_break` decades per standard deviation out added to break ties. With
        `recent_level` (`WindowedRun.trailing_means`, every window's), each window's normal is
        its metric's recent level."""
        result = np.zeros((len(self.test_rows), len(self.metrics)))
        for key in np.unique(self.keys):
            train = np.flatnonzero(self.run.is_train & (self.keys == key))
            in_test = np.flatnonzero(self.keys[self.test_rows] == key)
            test = self.test_rows[in_test]
            for column, metric in enumerate(self.metrics):
                level = (None if recent_level is None
                         else recent_level[f"{metric}__mean"].to_numpy(float))
                rarest = np.zeros(len(test))
                for statistic in self.levels:
                    values = self.run.features[f"{metric}__{statistic}"].to_numpy(float)
                    rarest = np.maximum(rarest, self._feature_decades(
                        values[train], values[test], self.hours[train], self.hours[test],
                        hourly_normal, hourly_tail, signed, sd_tie_break,
                        None if level is None else (level[train], level[test])))
                result[in_test, column] = rarest
        return result

    @staticmethod
    def _feature_decades(train, test, train_hours, test_hours, hourly_normal, hourly_tail,
                         signed, sd_tie_break, recent_levels=None) -> np.ndarray:
        """One feature of one key: each test window's rarity in decades against the key's
        training windows (`decades` says how; `recent_levels`, the train and test windows'
        own normals, when the normal is the recent level)."""
        if recent_levels is not None:
            train_normal, test_normal = recent_levels
        elif hourly_normal:
            medians = pd.Series(train).groupby(train_hours).median()
            train_normal = medians.reindex(train_hours).to_numpy()
            test_normal = medians.reindex(test_hours).fillna(np.median(train)).to_numpy()
        else:
            train_normal = test_normal = np.mean(train)
        train_moves, test_moves = train - train_normal, test - test_normal
        share = np.ones(len(test))
        groups = np.unique(test_hours) if hourly_tail else [None]
        for hour in groups:
            rows = slice(None) if hour is None else test_hours == hour
            reference = train_moves if hour is None else train_moves[train_hours == hour]
            if not len(reference):
                continue
            if signed:
                ordered, moves = np.sort(reference), test_moves[rows]
                above = 1 - np.searchsorted(ordered, moves, side="left") / len(ordered)
                below = np.searchsorted(ordered, moves, side="right") / len(ordered)
                # Two-sided shares double a one-sided one, so both read on one scale.
                share[rows] = np.minimum(2 * np.where(moves >= 0, above, below), 1.0)
            else:
                ordered = np.sort(np.abs(reference))
                share[rows] = 1 - np.searchsorted(ordered, np.abs(test_moves[rows]),
                                                  side="left") / len(ordered)
        sd = np.std(train) or 1.0
        return (-np.log10(np.maximum(share, SHARE_FLOOR))
                + sd_tie_break * np.minimum(np.abs(test_moves) / sd, SD_TIE_CAP))

    def with_correlated(self, decades: np.ndarray, min_correlation: float,
                        weight: float) -> np.ndarray:
        """`decades` with, for each metric, `weight` times the mean of the decades of the
        metrics whose window means moved with its own through the key's training windows
        (absolute correlation at least `min_correlation`; a metric that never moved has
        none): a metric whose companions are off their normal too comes first."""
        result = np.array(decades, dtype=np.float64)
        for key in np.unique(self.keys):
            train = self.run.is_train & (self.keys == key)
            in_test = np.flatnonzero(self.keys[self.test_rows] == key)
            means = self.run.features.loc[train, [f"{m}__mean" for m in self.metrics]]
            correlated = (means.corr().abs().to_numpy() >= min_correlation).astype(float)
            np.fill_diagonal(correlated, 0.0)
            companions = np.maximum(correlated.sum(axis=1), 1.0)
            result[in_test] += weight * (decades[in_test] @ correlated.T) / companions
        return result

    def trailing(self, decades: np.ndarray, windows: int, how: str) -> np.ndarray:
        """Each metric's decades over the key's last `windows` test windows, the window itself
        included (causal), taken by `how` (a pandas rolling method: mean, max)."""
        test = self.run.aggregates.loc[~self.run.is_train]
        frame = pd.DataFrame(decades, index=test.index)
        order = np.lexsort((test["window_start_ms"].to_numpy(), self.keys[self.test_rows]))
        ordered = frame.iloc[order]
        rolled = ordered.groupby(self.keys[self.test_rows][order]).transform(
            lambda column: getattr(column.rolling(windows, min_periods=1), how)())
        return rolled.reindex(test.index).to_numpy()


def longest_segments(run: WindowedRun, points: dict, metrics: list[str]) -> list[str]:
    """A markdown row per key: its longest labeled segment, how rare its labeled metrics are
    on the mean through it (as one training window in N as far out), and the other metrics
    rarer than every labeled one."""
    rows = []
    for d in run.data:
        if not d.interpretation:
            continue
        start, end, labeled = max(d.interpretation, key=lambda s: s[1] - s[0])
        through = points[d.key].loc[start:end - 1, metrics].mean()
        named = [metrics[i] for i in labeled]
        others = through.drop(named)
        rarer = others[others > through[named].max()].sort_values(ascending=False)
        rows.append(f"| {d.key} | {end - start} | {len(named)} | "
                    f"1 in {10 ** through[named].min():,.0f} to "
                    f"1 in {10 ** through[named].max():,.0f} | "
                    + (", ".join(f"{m} (1 in {10 ** v:,.0f})" for m, v in rarer.items())
                       or "none") + " |")
    return rows


def held_out_choice(per_key_by_choice: dict, what: str) -> str:
    """A choice between rankings made by leaving one key out: for each key, the choice
    (`what`, as the sentence names it) whose HitRate@150% is best on the other keys, and
    what it gives on the key; as a sentence for the report.

    >>> held_out_choice({12: {"a": 0.5, "b": 0.9}, 72: {"a": 0.6, "b": 0.7}}, "span")
    'The span chosen on the other keys, by leaving each key out in turn: a 12 (0.50), b 72 (0.70); held-out mean HitRate@150% 0.600.'
    """
    keys = list(next(iter(per_key_by_choice.values())))

    def on_the_others(choice, left_out: str) -> float:
        return float(np.mean([rate for key, rate in per_key_by_choice[choice].items()
                              if key != left_out]))

    chosen = {key: max(per_key_by_choice, key=lambda choice: on_the_others(choice, key))
              for key in keys}
    held_out = {key: per_key_by_choice[chosen[key]][key] for key in keys}
    return (f"The {what} chosen on the other keys, by leaving each key out in turn: "
            + ", ".join(f"{key} {chosen[key]} ({held_out[key]:.2f})" for key in keys)
            + f"; held-out mean HitRate@150% {np.mean(list(held_out.values())):.3f}.")


def main() -> None:
    study = start_study(study_arguments(__doc__, "models/results/smd/explanation_study.md"))
    config, data_dir, run, report = study.config, study.data_dir, study.run, study.report
    metrics = list(config.schema.metric_fields)
    detector, scored, points = run.score(config.model.detector_settings(), explain=True)
    test_windows = run.aggregates.loc[~run.is_train]
    say = report.say
    say(f"# Explanations of the configured detector, ranked other ways, on {data_dir}\n")
    say(f"Flagged windows: the configured detector's ({config.model.kind}, threshold "
        f"{config.model.threshold_method}). HitRate as `streamad evaluate` reports it: over all labeled minutes with an interpretation "
        "label, over those the detector flagged, and each labeled segment counted once.\n")
    say("| ranking | @100% | @150% | flagged, @150% | @150%, each segment once | @150% per key |")
    say("|---|---|---|---|---|---|")

    def row(name: str, explained_points: dict) -> dict[str, float]:
        """Say the ranking's row; return its HitRate@150% per key."""
        rates = explanation_hit_rates(run.data, explained_points, detector, metrics)
        mean = rates.pop("mean")
        say(f"| {name} | {mean['hit_rate_100']:.3f} | {mean['hit_rate_150']:.3f} | "
            f"{mean['flagged_hit_rate_150']:.3f} | {mean['segment_hit_rate_150']:.3f} | "
            + " ".join(f"{r['hit_rate_150']:.2f}" for r in rates.values()) + " |")
        return {key: r["hit_rate_150"] for key, r in rates.items()}

    def ranked_by(decades: np.ndarray) -> dict:
        frame = pd.DataFrame(decades, columns=metrics, index=test_windows.index)
        frame["is_anomaly"] = scored["is_anomaly"].to_numpy()
        return points_of(run.data, test_windows, frame, config)

    recent_windows = config.model.explain_recent_windows
    row(f"as configured ({config.model.explain_with}"
        + (f", and the move from the recent level over {recent_windows} windows"
           if recent_windows else "")
        + ")", points)
    rarity = StudyRarity(run)
    plain = rarity.decades()
    plain_points = ranked_by(plain)
    row("rarity read off every training window", plain_points)
    row("the same, the normal the key's median in the same hour of the day",
        ranked_by(rarity.decades(hourly_normal=True)))
    row("the same, and the share among the same hour's training windows",
        ranked_by(rarity.decades(hourly_normal=True, hourly_tail=True)))
    row("rarity of a move that far on the same side", ranked_by(rarity.decades(signed=True)))
    with_plain_by_span, with_recent = {}, {}
    for windows in RECENT_LEVEL_WINDOWS:
        recent = rarity.decades(recent_level=run.trailing_means(windows, lag=1,
                                                                across_split=True))
        row(f"rarity of the move from the key's level over its {windows} windows before",
            ranked_by(recent))
        with_recent[windows] = plain + recent
        with_plain_by_span[windows] = row(f"the same ({windows} windows) and rarity added",
                                          ranked_by(with_recent[windows]))
    for windows in TRAILING_WINDOWS:
        trailing = rarity.trailing(plain, windows, "mean")
        row(f"rarity averaged over the key's last {windows} windows", ranked_by(trailing))
        row(f"the larger of the window's rarity and its average over the last {windows}",
            ranked_by(np.maximum(plain, trailing)))
        row(f"the rarest of the key's last {windows} windows",
            ranked_by(rarity.trailing(plain, windows, "max")))

    by_companions = {"none": with_plain_by_span[COMPANION_SPAN]}
    for correlation in COMPANION_CORRELATIONS:
        for weight in COMPANION_WEIGHTS:
            # No "|" in the names: they are cells of a markdown table.
            by_companions[f"correlation {correlation}, weight {weight}"] = row(
                f"the same ({COMPANION_SPAN} windows, rarity added) and {weight} x the mean "
                f"rarity of the metrics whose means correlate with its own at {correlation} "
                "or more in training",
                ranked_by(rarity.with_correlated(with_recent[COMPANION_SPAN], correlation,
                                                 weight)))

    say("\n" + held_out_choice(with_plain_by_span, "span (plain rarity added)"))
    say("\n" + held_out_choice(by_companions, "companions (correlation and weight)"))

    say("\nEach key's longest labeled segment, by rarity read off every training window: how "
        "far from their normal its labeled metrics are on the mean through it, as one "
        "training window in N being as far out (1 in 10,000 is the floor: beyond every "
        "training window), and the other metrics further out than all of them.\n")
    say("| key | minutes | labeled metrics | their rarity | other metrics rarer |")
    say("|---|---|---|---|---|")
    for line in longest_segments(run, ranked_by(rarity.decades(sd_tie_break=0.0)), metrics):
        say(line)
    report.write()


if __name__ == "__main__":
    main()
