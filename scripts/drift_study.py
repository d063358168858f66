"""Would automatic re-baselining help on SMD? The measurements behind the README's "Drift" and
"Where this falls short" paragraphs.

    bin/streamad python scripts/drift_study.py   # about 1 minute; prints the tables and
                                                 # writes models/results/smd/drift_study.md

Everything the configured detector does (windows, features, scaling, scorer, per-key
threshold) is the product's code; only the treatment of drift differs per row. The first
rows' drift signal is causal: per key and metric, the mean of the window means over the trailing
`context` windows (one day by default), compared with the key's training mean in units of its
training standard deviation.

- ``none``: the product as configured;
- ``recenter all``: every metric's level features (mean, min, max, last) minus that trailing
  mean, in training and in test alike;
- ``recenter drifted k``: the same, only where the trailing mean is more than k sd from the
  training mean;
- ``neutralize drifted k``: where it is, the metric's features are replaced by their training
  means, so the scorer ignores the metric while it drifts;
- ``drop while drifting, after N``: the job's own drift signal. The key's windows go in time
  order through `models.drift.DriftTracker` (as in the job, with the configuration's
  ``alerts.drift_clear_after_windows``, declaring a metric drifting after N out-of-range
  windows), and while a metric is declared drifting its part of the window's score (its
  share of the score's contributions) is taken out before the threshold: the re-baselining
  the job could do with the state it keeps.

Then the daily spikes: per key and metric, the minutes of the day at which the metric is more
than 20 training sd from its training mean on at least 5 days of the train half, and how
many of the test half's events at those minutes are labeled anomalous.

The explanation methods are compared by `streamad evaluate` itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from models.data import TIME_MS_COLUMN
from models.detector import Detector
from models.drift import DriftPolicy, DriftTracker
from models.evaluation import precision_recall_f1
from streamad.evaluate import LABEL_COLUMN, WindowedRun, points_of
from study_report import start_study, study_arguments

LEVEL_STATISTICS = ("mean", "min", "max", "last")
# Out-of-range windows after which the drift tracker declares a metric drifting, in days.
DROP_AFTER_DAYS = (0.5, 1, 2)


def treated(features, aggregates, is_train, key_field, metrics, trailing, mode, k):
    features = features.copy()
    keys = aggregates[key_field]
    train_mean = features.loc[is_train].groupby(keys[is_train]).mean()
    train_std = features.loc[is_train].groupby(keys[is_train]).std()
    for metric in metrics:
        level = trailing[f"{metric}__mean"]
        shift = level - keys.map(train_mean[f"{metric}__mean"])
        spread = keys.map(np.maximum(train_std[f"{metric}__mean"], 1e-3))
        drifted = (shift.abs() / spread > k) if k is not None else pd.Series(True, level.index)
        if mode == "recenter":
            for statistic in LEVEL_STATISTICS:
                name = f"{metric}__{statistic}"
                features[name] = np.where(drifted, features[name] - shift, features[name])
        elif mode == "neutralize":
            for statistic in (*LEVEL_STATISTICS, "std"):
                name = f"{metric}__{statistic}"
                features[name] = np.where(drifted, keys.map(train_mean[name]), features[name])
    return features


def scored_with_score_shares(run: WindowedRun, settings) -> tuple[Detector, pd.DataFrame]:
    """The detector fitted with `settings`, and its scored test windows with each metric's
    share of the score's contributions as a column (what `dropped_while_drifting` takes
    out); the decisions are the configured ones, as the explanation does not change them."""
    detector, scored, _ = run.score(dataclasses.replace(settings, explain_with="score"),
                                    explain=True)
    return detector, scored


def dropped_while_drifting(run: WindowedRun, detector: Detector, scored: pd.DataFrame,
                           policy: DriftPolicy) -> tuple[dict, dict]:
    """Per key, each test minute's decision when, at each window, the metrics the drift
    tracker declares drifting no longer count in the window's score (`scored` as
    `scored_with_score_shares` gives it); and per key, the share of its test windows with a
    metric declared drifting."""
    test_windows = run.aggregates.loc[~run.is_train]
    key_field = run.config.schema.key_field
    metric_column = {metric: i for i, metric in enumerate(detector.metrics)}
    shares = scored[detector.metrics].to_numpy()
    kept_share = np.ones(len(scored))
    drifting_share = {}
    for key, windows in test_windows.groupby(key_field):
        tracker = DriftTracker(str(key), policy)
        with_drift = 0
        for row in scored.index.get_indexer(windows.sort_values("window_start_ms").index):
            tracker.update(row, scored["out_of_range"].iat[row])
            drifting = [metric_column[m] for m in tracker.drifting()]
            kept_share[row] -= shares[row, drifting].sum()
            with_drift += bool(drifting)
        drifting_share[str(key)] = with_drift / len(windows)
    decisions = pd.DataFrame({"is_anomaly": scored["score"] * kept_share > scored["threshold"]},
                             index=scored.index)
    return points_of(run.data, test_windows, decisions, run.config), drifting_share


def main() -> None:
    parser = study_arguments(__doc__, "models/results/smd/drift_study.md")
    parser.add_argument("--context", type=int, default=288,
                        help="trailing windows of the drift signal (default 288: one day)")
    study = start_study(parser)
    args, config, data_dir, run, report = (study.args, study.config, study.data_dir, study.run,
                                           study.report)
    metrics = list(config.schema.metric_fields)
    key_field = config.schema.key_field
    aggregates, features, is_train = run.aggregates, run.features, run.is_train
    trailing = run.trailing_means(args.context, across_split=True)
    settings = config.model.detector_settings()
    labels = run.labels

    rows = [("none", None, "none (as configured)"), ("recenter", None, "recenter all")]
    rows += [("recenter", k, f"recenter drifted {k}") for k in (3, 6)]
    rows += [("neutralize", k, f"neutralize drifted {k}") for k in (3, 5, 8)]
    keys = [d.key for d in run.data]
    say = report.say

    say(f"# Drift treatments on {data_dir}\n")
    say(f"Drift signal of the recentered and neutralized rows: trailing mean of "
        f"{args.context} windows; k in training sd. The last rows use the job's drift "
        f"tracker (a run ends after {config.alerts.drift_clear_after_windows} windows "
        "back in range).\n")
    say(f"| treatment | mean point F1 | {' | '.join(keys)} |")
    say("|---|---|" + "---|" * len(keys))

    def row(label: str, points: dict) -> None:
        f1 = {key: precision_recall_f1(points[key]["is_anomaly"].to_numpy(bool),
                                       labels[key])["f1"] for key in keys}
        say(f"| {label} | {np.mean(list(f1.values())):.3f} | "
            + " | ".join(f"{f1[key]:.2f}" for key in keys) + " |")

    for mode, k, label in rows:
        frame = features if mode == "none" else treated(
            features, aggregates, is_train, key_field, metrics, trailing, mode, k)
        row(label, run.score(settings, features=frame)[2])
    windows_a_day = 86400 // config.window.effective_slide_s
    detector, scored = scored_with_score_shares(run, settings)
    drifting_shares = {}
    for days in DROP_AFTER_DAYS:
        after = round(days * windows_a_day)
        policy = DriftPolicy(after, config.alerts.drift_clear_after_windows)
        points, drifting_shares[after] = dropped_while_drifting(run, detector, scored, policy)
        row(f"drop while drifting, after {after} windows ({days:g} day"
            f"{'s' if days > 1 else ''})", points)
    say("\nThe share of each key's test windows with a metric declared drifting: "
        + "; ".join(f"after {after} windows " + ", ".join(
            f"{key} {shares.get(key, 0):.0%}" for key in keys)
            for after, shares in drifting_shares.items()) + ".")

    daily_spike_study(run.data, metrics, say)
    report.write()


def daily_spike_study(data, metrics, say, far_sd: float = 20.0, min_days: int = 5):
    say(f"\n| key | metric | minute of the day | train days beyond {far_sd:g} sd | "
        "test events at that minute | of which labeled anomalous |\n|---|---|---|---|---|---|")
    def minute_of(frame):
        return (frame[TIME_MS_COLUMN].to_numpy() // 60_000) % 1440

    for d in data:
        train_minute, test_minute = minute_of(d.train), minute_of(d.test)
        labels = d.test[LABEL_COLUMN].to_numpy()
        for metric in metrics:
            values = d.train[metric].to_numpy(np.float64)
            spread = values.std()
            if spread == 0:
                continue
            far = np.abs(values - values.mean()) > far_sd * spread
            for minute, days in zip(*np.unique(train_minute[far], return_counts=True)):
                if days >= min_days:
                    at = test_minute == minute
                    say(f"| {d.key} | {metric} | {minute // 60:02d}:{minute % 60:02d} | {days} | "
                        f"{at.sum()} | {int(labels[at].sum())} |")


if __name__ == "__main__":
    main()
