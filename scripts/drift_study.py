"""Would automatic re-baselining help on SMD? The measurements behind the README's "Drift" and
"Where this falls short" paragraphs.

    bin/streamad python scripts/drift_study.py   # about 1 minute; prints the tables and
                                                 # writes models/results/smd/drift_study.md

Everything the configured detector does (windows, features, scaling, scorer, per-key
quantile threshold) is the product's code; only the treatment of drift differs per row. The
drift signal is causal: per key and metric, the mean of the window means over the trailing
`context` windows (one day by default), compared with the key's training mean in units of its
training standard deviation.

- ``none``: the product as configured;
- ``recenter all``: every metric's level features (mean, min, max, last) minus that trailing
  mean, in training and in test alike;
- ``recenter drifted k``: the same, only where the trailing mean is more than k sd from the
  training mean;
- ``neutralize drifted k``: where it is, the metric's features are replaced by their training
  means, so the scorer ignores the metric while it drifts.

Then the daily spikes: per key and metric, the minutes of the day at which the metric is more
than 20 training sd from its training mean on at least 5 days of the train half, and how
many of the test half's events at those minutes are labeled anomalous.

The explanation methods are compared by `streamad evaluate` itself.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from models.data import TIME_MS_COLUMN
from models.evaluation import precision_recall_f1
from streamad.evaluate import LABEL_COLUMN
from study_report import start_study, study_arguments

LEVEL_STATISTICS = ("mean", "min", "max", "last")


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
    say(f"Drift signal: trailing mean of {args.context} windows; k in training sd.\n")
    say(f"| treatment | mean point F1 | {' | '.join(keys)} |")
    say("|---|---|" + "---|" * len(keys))
    for mode, k, label in rows:
        frame = features if mode == "none" else treated(
            features, aggregates, is_train, key_field, metrics, trailing, mode, k)
        _, _, points = run.score(settings, features=frame)
        f1 = {key: precision_recall_f1(points[key]["is_anomaly"].to_numpy(bool),
                                       labels[key])["f1"] for key in keys}
        say(f"| {label} | {np.mean(list(f1.values())):.3f} | "
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
