"""How should a feature's deviation be measured: in standard deviations, or by its tail? The
measurement behind the README's "Per-key baselines" paragraph and `model.scale_tail_quantile`.

    bin/streamad python scripts/scale_study.py   # about 1 minute; prints the table and
                                                 # writes models/results/smd/scale_study.md

`KeyedScaler` (models/scaling.py) divides each feature's distance from its key's training mean
by a scale: the standard deviation alone (``none``), or the larger of it and the scale the
feature's tail implies (its q quantile of absolute deviations, divided by that quantile under
a normal distribution). For each scale the configured scorer and cap go through `tune`'s
threshold rules on the same windows, and each row gives:

- the configured threshold rule's mean point F1 (in sample for this row's scale);
- the best rule in sample, and what `tune`'s leave-one-key-out gives on held-out keys when it
  chooses among the rules (the honest figure);
- the label-tuned ceiling of the configured fit (best F1 on the whole test).

Each tail scale is measured twice: read over the configured band of tail levels around q
(`models.scaling.TAIL_BAND_DECADES`, the product's way) and at the level q alone (a band 0
decades wide, the product's way before), to show what averaging over the band is worth.

Last, the scale itself is chosen like a rule: leave one key out over every (scale, rule), so
the figure also pays for having picked the scale on these keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from models.evaluation import best_f1_threshold
from models.tuning import best_candidate, leave_one_key_out
from streamad.config import load_config
from streamad.tune import (DEFAULT_MULTIPLES, DEFAULT_POT_RISKS, DEFAULT_RATES,
                           candidates_of, configured_candidate, f1_table, windowed_keys)
from study_report import StudyReport, study_arguments

TAIL_QUANTILES = (None, 0.99, 0.995, 0.998, 0.999, 0.9995)


def main() -> None:
    parser = study_arguments(__doc__, "models/results/smd/scale_study.md")
    args = parser.parse_args()

    config = load_config()
    data_dir = Path(args.data_dir)
    run = windowed_keys(config, data_dir)
    configured = configured_candidate(config)
    candidates = candidates_of([configured.kind], [configured.cap], DEFAULT_RATES,
                               DEFAULT_POT_RISKS, DEFAULT_MULTIPLES, configured)
    settings = config.model.detector_settings().for_scores_only()
    labels = run.labels
    keys = list(labels)
    tables = {}
    report = StudyReport(args.output)
    say = report.say

    say(f"# Measuring deviations by the standard deviation or by the tail, on {data_dir}\n")
    say(f"Scorer {configured.kind}, cap {configured.cap:g}; configured threshold: "
        f"{configured.rule.description}. {len(candidates)} threshold rules "
        "(as `streamad tune`). Configured setting: "
        f"scale_tail_quantile {settings.scale_tail_quantile}.\n")
    say(f"| scale (tail read over) | configured rule, mean point F1 | {' | '.join(keys)} "
        "| best rule in sample | its F1 | held-out F1 (leave one key out) | ceiling |")
    say("|---|---|" + "---|" * len(keys) + "---|---|---|---|")
    band = settings.scale_tail_band_decades
    for decades in (band, 0.0):
        for tail_quantile in TAIL_QUANTILES:
            if tail_quantile is None and decades != band:
                continue  # the standard deviation has no tail to read
            base = dataclasses.replace(settings, scale_tail_quantile=tail_quantile,
                                       scale_tail_band_decades=decades)
            table = f1_table(run, candidates, base=base, progress=False)
            tables[decades, tail_quantile] = table
            best, best_f1 = best_candidate(table)
            held_out = np.mean([r.held_out_f1 for r in leave_one_key_out(table)])
            _, _, points = run.score(base)
            ceiling = np.mean([best_f1_threshold(points[key]["score"].to_numpy(),
                                                 labels[key])[1] for key in keys])
            row = table.loc[configured.name]
            scale = ("standard deviation" if tail_quantile is None
                     else f"tail, q = {tail_quantile} ({band_name(decades)})")
            say(f"| {scale} | {row.mean():.3f} | "
                + " | ".join(f"{row[key]:.2f}" for key in keys)
                + f" | {best.split(', ')[-1]} | {best_f1:.3f} | {held_out:.3f} "
                  f"| {ceiling:.3f} |")
    for decades in (band, 0.0):
        chosen_together(say, {q: table for (d, q), table in tables.items()
                              if d == decades or q is None}, band_name(decades))
    report.write()


def band_name(decades: float) -> str:
    """How a tail scale is read, in words.

    >>> band_name(1.0), band_name(0.5), band_name(0.0)
    ('a decade around q', '0.5 decades around q', 'q alone')
    """
    if not decades:
        return "q alone"
    return "a decade around q" if decades == 1 else f"{decades:g} decades around q"


def chosen_together(say, tables: dict, read: str) -> None:
    """Leave one key out over every (scale, rule) of `tables`, a scale's F1 table by its
    scale_tail_quantile."""
    every = pd.concat({str(q): table for q, table in tables.items()})
    every.index = [f"{q}: {rule}" for q, rule in every.index]
    held_out = leave_one_key_out(every)
    say(f"\nScale and rule chosen together on the other keys, the tail read over {read} "
        f"(leave one key out, {len(every)} candidates): mean held-out point F1 "
        f"{np.mean([r.held_out_f1 for r in held_out]):.3f}.\n")
    say("| held-out key | chosen (scale_tail_quantile: candidate) | held-out F1 |")
    say("|---|---|---|")
    for r in held_out:
        say(f"| {r.key} | {r.chosen} | {r.held_out_f1:.3f} |")


if __name__ == "__main__":
    main()
