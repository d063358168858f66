"""Would a longer context beside the 10-minute window help on SMD? The measurement behind the
README's "Longer context" paragraph.

    bin/streamad python scripts/context_study.py   # about 1 minute; prints the table and
                                                   # writes models/results/smd/context_study.md

The issue asked for window features with, optionally, a longer context window beside the
short one (multi-resolution). Before building a second window into the job, this measures
what it would give. Everything is the product's code (windows, features, scaling, scorer,
threshold rule) except the extra features of each row, which are causal (computed from the
key's own earlier windows only, train and test apart, as the job would see them):

- ``none``: the product as configured;
- ``trailing mean, N``: beside each metric's window features, the mean of its window means over
  the key's previous N windows (a longer, coarser view of the same metric);
- ``change against trailing N``: the window mean minus that trailing mean (how much the
  metric moved against its recent level, which a single window cannot see);
- ``change against the previous window``: the window mean minus the mean of the last window
  that does not overlap it.

Each row gives the mean point F1 with the configured unsupervised threshold, and the
label-tuned ceiling (best F1 on the whole test, which only says whether the features rank the
anomalies higher at all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation import best_f1_threshold, precision_recall_f1
from study_report import start_study, study_arguments


def with_extra(features: pd.DataFrame, extra: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """`features` and, beside them, each metric's `extra` column named ``<metric>__<suffix>``."""
    extra = extra.copy()
    extra.columns = [c.replace("__mean", f"__{suffix}") for c in extra.columns]
    return pd.concat([features, extra], axis=1)


def main() -> None:
    study = start_study(study_arguments(__doc__, "models/results/smd/context_study.md"))
    config, data_dir, run, report = study.config, study.data_dir, study.run, study.report
    metrics = list(config.schema.metric_fields)
    settings = config.model.detector_settings().for_scores_only()
    slide_s = config.window.effective_slide_s
    hour = 3600 // slide_s
    not_overlapping = config.window.size_s // slide_s
    means = run.features[[f"{m}__mean" for m in metrics]]
    earlier = {windows: run.trailing_means(windows, lag=1) for windows in (hour, 6 * hour)}

    rows = [("none (as configured)", run.features)]
    for windows, trailing in earlier.items():
        rows.append((f"trailing mean, {windows} windows ({windows * slide_s // 60} min)",
                     with_extra(run.features, trailing, f"trailing{windows}")))
    for windows, trailing in earlier.items():
        rows.append((f"change against trailing {windows} windows",
                     with_extra(run.features, means - trailing, f"change{windows}")))
    rows.append(("change against the previous window",
                 with_extra(run.features, means - run.trailing_means(1, lag=not_overlapping),
                            "change_previous")))

    keys = [d.key for d in run.data]
    labels = run.labels
    say = report.say

    say(f"# A longer context beside the window, on {data_dir}\n")
    say(f"Threshold: {settings.threshold_rule.description}. Ceiling: best F1 on the whole "
        "test (uses labels).\n")
    say(f"| features | mean point F1 | ceiling | {' | '.join(keys)} |")
    say("|---|---|---|" + "---|" * len(keys))
    for label, frame in rows:
        names = run.feature_names + [c for c in frame.columns if c not in run.features.columns]
        _, _, points = run.score(settings, features=frame, feature_names=names)
        f1 = {key: precision_recall_f1(points[key]["is_anomaly"].to_numpy(bool),
                                       labels[key])["f1"] for key in keys}
        ceiling = {key: best_f1_threshold(points[key]["score"].to_numpy(), labels[key])[1]
                   for key in keys}
        say(f"| {label} ({len(names)} features) | {np.mean(list(f1.values())):.3f} | "
            f"{np.mean(list(ceiling.values())):.3f} | "
            + " | ".join(f"{f1[key]:.2f}" for key in keys) + " |")
    report.write()


if __name__ == "__main__":
    main()
