"""`streamad tune`: choose detector settings on labeled keys, and say what the choice is worth
on a key it was not tuned on.

The data are what `streamad evaluate` reads (one folder, ``<key>_train`` and labeled
``<key>_test`` files per key). Every candidate (scorer kind x cap x unsupervised threshold
rule, and x window statistics when more than the configured ones are given) is trained on
the train files and scored on the test files exactly as `evaluate` does; one fit serves all
the threshold rules of a (statistics, kind, cap). Then `models.tuning` does the choosing:

- **leave one key out**: for each key, the candidate with the best mean point F1 on the other
  keys, and its point F1 on the held-out key. The mean of these is the honest estimate of what
  tuning gives on a new key;
- **chosen on all keys**: the candidate to put in the configuration, with its in-sample mean
  F1 (optimistic, and labeled so).

The thresholds themselves stay unsupervised (a target alert rate, a tail risk or a multiple
of the median, applied to each key's own training scores): the labels only choose the rule
and the scorer. The median-multiple rule is tried only with scorers whose zero means normal.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models.evaluation import precision_recall_f1
from models.detector import DetectorSettings, threshold_fits_scorer
from models.threshold import ThresholdRule
from models.tuning import best_candidate, leave_one_key_out
from streamad.config import ConfigError, JobConfig
from streamad.evaluate import EvaluationError, WindowedRun, find_keys

DEFAULT_CAPS = (5.0, 10.0)
DEFAULT_RATES = (0.001, 0.002, 0.005, 0.01, 0.02)
DEFAULT_POT_RISKS = (1e-3, 1e-4)
DEFAULT_MULTIPLES = (8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0)


@dataclass(frozen=True)
class Candidate:
    kind: str
    cap: float
    rule: ThresholdRule
    # The window statistics the features are made of; None: the configured ones.
    statistics: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        name = f"{self.kind}, cap {self.cap:g}, {self.rule.name}"
        return name if self.statistics is None else f"{name}, {'+'.join(self.statistics)}"

    def settings(self) -> dict:
        """The configuration's keys, by section, that select this candidate."""
        settings = {"model": {"kind": self.kind, "cap": self.cap,
                              "threshold_method": self.rule.method,
                              self.rule.level_name: self.rule.level}}
        if self.statistics is not None:
            settings["features"] = {"statistics": list(self.statistics)}
        return settings


def statistics_sets_of(sets: Sequence[Sequence[str]], config: JobConfig
                       ) -> list[tuple[str, ...] | None]:
    """The window statistics to try, each checked as `config` with it as its
    ``features.statistics``; the configured set is None, and comes first.

    >>> from streamad.config import load_config
    >>> config = load_config()
    >>> statistics_sets_of([["mean", "std"], list(config.features.statistics)], config)
    [None, ('mean', 'std')]
    """
    checked = []
    for statistics in sets:
        try:
            dataclasses.replace(config, features=dataclasses.replace(
                config.features, statistics=tuple(statistics)))
        except ConfigError as error:
            raise EvaluationError(f"--statistics {','.join(statistics)}: {error}") from None
        same = tuple(statistics) == tuple(config.features.statistics)
        checked.append(None if same else tuple(statistics))
    return [None] + [s for s in dict.fromkeys(checked) if s is not None]


def candidates_of(kinds: Sequence[str], caps: Sequence[float], rates: Sequence[float],
                  pot_risks: Sequence[float], multiples: Sequence[float],
                  configured: Candidate,
                  statistics_sets: Sequence[tuple[str, ...] | None] = (None,)
                  ) -> list[Candidate]:
    """The grid, with the configured settings first so that ties keep them."""
    if any(cap <= 0 for cap in caps):
        raise EvaluationError(f"caps are in standard deviations and must be positive, got "
                              f"{list(caps)}.")
    rules = []
    for method, option, levels in (("quantile", "--rates", rates),
                                   ("pot", "--pot-risks", pot_risks),
                                   ("median_multiple", "--multiples", multiples)):
        for level in levels:
            try:
                rules.append(ThresholdRule(method, float(level)))
            except ValueError as error:
                raise EvaluationError(f"{option} {','.join(f'{v:g}' for v in levels)}: "
                                      f"{error}") from None
    grid = [Candidate(kind, float(cap), rule, statistics)
            for statistics in statistics_sets for kind in kinds for cap in caps
            for rule in rules if threshold_fits_scorer(rule, kind)]
    return [configured] + [c for c in grid if c != configured]


def configured_candidate(config: JobConfig) -> Candidate:
    settings = config.model.detector_settings()
    return Candidate(settings.kind, settings.cap, settings.threshold_rule)


def windowed_keys(config: JobConfig, data_dir: Path) -> WindowedRun:
    """The labeled folder's keys in windows, refused with fewer than the two keys that
    leaving one out needs."""
    keys = find_keys(Path(data_dir))
    if len(keys) < 2:
        raise EvaluationError(f"{data_dir} has labeled data of {len(keys)} key; tuning by "
                              f"leave-one-key-out needs at least 2.")
    return WindowedRun.of_folder(config, data_dir, keys)


def f1_table(run: WindowedRun, candidates: Sequence[Candidate],
             base: DetectorSettings | None = None, progress: bool = True) -> pd.DataFrame:
    """Point F1 of every candidate (rows) on every key's test file (columns). A candidate
    sets the scorer, cap, threshold rule and window statistics; the rest of the settings are
    `base`'s (the configuration's unless given)."""
    from tqdm import tqdm

    labels = run.labels
    keys = list(labels)
    fits = list(dict.fromkeys((c.statistics, c.kind, c.cap) for c in candidates))
    table = pd.DataFrame(index=[c.name for c in candidates], columns=keys, dtype=float)
    base = run.config.model.detector_settings() if base is None else base
    runs = {statistics: run if statistics is None else run.with_statistics(statistics)
            for statistics in dict.fromkeys(s for s, _, _ in fits)}
    for statistics, kind, cap in tqdm(fits, desc="tune", unit="fit", disable=not progress,
                                      file=sys.stderr):
        # Each candidate applies its own rule to the keys' calibrations; the fit's own
        # threshold goes unused, and quantile suits every scorer.
        detector, _, points = runs[statistics].score(dataclasses.replace(
            base, kind=kind, cap=cap, threshold_method="quantile"))
        for candidate in candidates:
            if (candidate.statistics, candidate.kind, candidate.cap) != (statistics, kind, cap):
                continue
            for key in keys:
                threshold = candidate.rule.threshold(detector.calibrator_for(key))
                flagged = points[key]["score"].to_numpy() > threshold
                table.at[candidate.name, key] = precision_recall_f1(flagged, labels[key])["f1"]
    return table


def tune(config: JobConfig, data_dir: Path, output_dir: Path, kinds: Sequence[str],
         caps: Sequence[float] = DEFAULT_CAPS, rates: Sequence[float] = DEFAULT_RATES,
         pot_risks: Sequence[float] = DEFAULT_POT_RISKS,
         multiples: Sequence[float] = DEFAULT_MULTIPLES,
         statistics: Sequence[Sequence[str]] = (), progress: bool = True) -> dict:
    """Run the grid, choose, and write tuning.json and tuning.md to `output_dir`.
    `statistics` are sets of window statistics to try beside the configured ones."""
    configured = configured_candidate(config)
    candidates = candidates_of(kinds, caps, rates, pot_risks, multiples, configured,
                               statistics_sets_of(statistics, config))
    table = f1_table(windowed_keys(config, data_dir), candidates, progress=progress)
    held_out = leave_one_key_out(table)
    chosen, chosen_f1 = best_candidate(table)
    by_name = {c.name: c for c in candidates}
    report = {
        "data": {"folder": str(Path(data_dir).resolve()), "keys": list(table.columns)},
        "configured_statistics": list(config.features.statistics),
        "measure": "point F1 over the test files' events, each taking the decision of the "
                   "earliest-closing window that holds it (as in streamad evaluate)",
        "candidates": len(candidates),
        "leave_one_key_out": [dataclasses.asdict(r) for r in held_out],
        "held_out_mean_f1": float(np.mean([r.held_out_f1 for r in held_out])),
        "chosen_on_all_keys": {"candidate": chosen, "in_sample_mean_f1": chosen_f1,
                               "settings": by_name[chosen].settings()},
        "configured": {"candidate": configured.name,
                       "in_sample_mean_f1": float(table.loc[configured.name].mean())},
        "f1": {name: row.to_dict() for name, row in table.iterrows()},
        "settings": {c.name: c.settings() for c in candidates},
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tuning.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "tuning.md").write_text(markdown_report(report, table))
    return report


def markdown_report(report: dict, table: pd.DataFrame, top: int = 10) -> str:
    keys = report["data"]["keys"]
    chosen = report["chosen_on_all_keys"]
    tries_statistics = any("features" in s for s in report["settings"].values())
    lines = [
        f"# Tuning on {len(keys)} keys of {report['data']['folder']}",
        "",
        f"{report['candidates']} candidates (scorer x cap x unsupervised threshold rule"
        + (" x window statistics" if tries_statistics else "")
        + f"), each measured by {report['measure']}."
        + (f" A candidate without statistics in its name uses the configured ones "
           f"({'+'.join(report['configured_statistics'])})." if tries_statistics else ""),
        "",
        "## Leave one key out: what tuning gives on a key it was not tuned on",
        "",
        "| held-out key | chosen on the other keys | their mean F1 | held-out F1 |",
        "|---|---|---|---|",
    ]
    for r in report["leave_one_key_out"]:
        lines.append(f"| {r['key']} | {r['chosen']} | {r['others_f1']:.3f} | "
                     f"**{r['held_out_f1']:.3f}** |")
    lines += [
        "",
        f"Mean held-out point F1: **{report['held_out_mean_f1']:.3f}**. This, not the "
        "in-sample figure below, is what to expect on a new key.",
        "",
        "## Chosen on all keys (in-sample, optimistic)",
        "",
        f"{chosen['candidate']}: mean point F1 {chosen['in_sample_mean_f1']:.3f} on the keys "
        f"it was chosen on. The configured settings ({report['configured']['candidate']}) "
        f"give {report['configured']['in_sample_mean_f1']:.3f}. To use the chosen ones, set "
        "in the configuration:",
        "",
        "```yaml",
        *[line for section, keys in chosen["settings"].items()
          for line in [f"{section}:", *(f"  {name}: {_yaml_value(value)}"
                                        for name, value in keys.items())]],
        "```",
        "",
        f"## The {min(top, len(table))} best candidates in sample",
        "",
        "| candidate | mean F1 | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    ranked = table.assign(mean=table.mean(axis=1)).sort_values("mean", ascending=False,
                                                                kind="stable")
    for name, row in ranked.head(top).iterrows():
        lines.append(f"| {name} | {row['mean']:.3f} | "
                     + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _yaml_value(value) -> str:
    """A setting as the configuration file writes it (a list in flow style)."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)
