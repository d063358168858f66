"""Would automatic re-baselining help on SMD? The measurements behind the README's "Drift" and
"Where this falls short" paragraphs.

    bin/streamad python scripts/drift_study.py   # about 3 minutes; prints the tables and
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
  the job could do with the state it keeps;
- ``retrained every day on what it accepted``: the README's remedy for drift, a retrain, done
  every day of the test half without labels. Before each day the detector is fitted again on
  the key's train windows and every earlier test window it scored below a share of its
  threshold (the windows it took for normal, a far-off window stays out), then scores the
  day. Its second table gives point F1 per multiple of the threshold beside the configured
  detector's: what the daily retrain does to each key's choice of threshold.

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
# The daily retrain takes in the test windows scored below this share of their threshold.
RETRAIN_ACCEPT_SHARES = (0.2, 0.4, 1.0)
# The multiples of the threshold at which the second table gives point F1.
THRESHOLD_FACTORS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
DAY_MS = 86_400_000


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


def retrained_daily(run: WindowedRun, settings, accept_share: float) -> pd.DataFrame:
    """Each test window's score and threshold (columns ``score``, ``threshold``) from a
    detector retrained before each day of the key's test half (days counted from its first
    test window) on the train windows and the earlier test windows that scored below
    `accept_share` of their threshold. Causal: a day is scored by a detector that saw only
    what came before it."""
    aggregates, key_field = run.aggregates, run.config.schema.key_field
    names = run.feature_names
    test_rows = np.flatnonzero(~run.is_train)
    starts = aggregates["window_start_ms"].to_numpy()[test_rows]
    keys = aggregates[key_field].to_numpy()[test_rows]
    day = np.empty(len(test_rows), dtype=np.int64)
    for key in np.unique(keys):
        own = keys == key
        day[own] = (starts[own] - starts[own].min()) // DAY_MS
    fit_rows = np.flatnonzero(run.is_train)
    result = pd.DataFrame(index=aggregates.index[test_rows], columns=["score", "threshold"],
                          dtype=float)
    for today in range(day.max() + 1):
        detector = Detector(names, settings).fit(run.features.iloc[fit_rows][names],
                                                 aggregates[key_field].iloc[fit_rows])
        rows = test_rows[day == today]
        scored = detector.score(run.features.iloc[rows][names],
                                aggregates[key_field].iloc[rows], explain=False)
        result.loc[scored.index, ["score", "threshold"]] = scored[["score", "threshold"]]
        accepted = rows[(scored["score"] < accept_share * scored["threshold"]).to_numpy()]
        fit_rows = np.concatenate([fit_rows, accepted])
    return result


def f1_by_threshold_factor(run: WindowedRun, scored: pd.DataFrame) -> pd.DataFrame:
    """Point F1 (factors x keys) of flagging the windows above each of THRESHOLD_FACTORS
    times their threshold (`scored` with columns ``score`` and ``threshold``)."""
    test_windows = run.aggregates.loc[~run.is_train]
    ratio = (scored["score"] / scored["threshold"]).reindex(test_windows.index)
    decisions = pd.DataFrame({f"{factor:g}": ratio > factor for factor in THRESHOLD_FACTORS})
    points = points_of(run.data, test_windows, decisions, run.config)
    return pd.DataFrame({key: [precision_recall_f1(points[key][column].to_numpy(bool),
                                                   labels)["f1"]
                               for column in decisions.columns]
                         for key, labels in run.labels.items()},
                        index=list(decisions.columns))


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
    settings = config.model.detector_settings().for_scores_only()
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
    retrained = {}
    for share in RETRAIN_ACCEPT_SHARES:
        retrained[share] = retrained_daily(run, settings, share)
        decisions = pd.DataFrame(
            {"is_anomaly": retrained[share]["score"] > retrained[share]["threshold"]})
        row(f"retrained every day on what it accepted (below {share:g} x its threshold)",
            points_of(run.data, aggregates.loc[~is_train], decisions, config))
    say("\nThe share of each key's test windows with a metric declared drifting: "
        + "; ".join(f"after {after} windows " + ", ".join(
            f"{key} {shares.get(key, 0):.0%}" for key in keys)
            for after, shares in drifting_shares.items()) + ".")

    say("\nPoint F1 at multiples of the threshold, as configured and retrained every day: "
        "whether some one threshold suits every key.\n")
    say(f"| detector | times the threshold | mean point F1 | {' | '.join(keys)} |")
    say("|---|---|---|" + "---|" * len(keys))
    for name, frame in (("as configured", scored),
                        *((f"retrained every day, below {share:g} x", frame)
                          for share, frame in retrained.items())):
        for factor, f1 in f1_by_threshold_factor(run, frame).iterrows():
            say(f"| {name} | {factor} | {f1.mean():.3f} | "
                + " | ".join(f"{f1[key]:.2f}" for key in keys) + " |")

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
