"""`streamad evaluate`: how well the configured detector works on labeled data.

Input, per key, in one folder (the SMD layout; any data in this layout works):

- ``<key>_train.csv[.gz]``: history taken as (mostly) normal, the schema's time and metric
  fields (and, optionally, the key field);
- ``<key>_test.csv[.gz]``: what follows it in time, with a ``label`` column (1 = anomalous);
- optionally ``<key>_interpretation_label.txt``: lines ``start-end:m1,m2,...`` naming the
  metrics behind each labeled segment (0-based test rows, end exclusive; 1-based metric
  numbers in schema order), for the explanation hit rate.

The detector is trained exactly as `streamad train` trains it (same windows, same features,
same code) on the train files, then scores the windows of the test files as the job would
if it read them (the test events windowed on their own). Each test event takes the
decision of the earliest-closing window that holds it: the moment the job could first have
alerted on it. Every figure is computed per key and averaged over keys.

Rows of the report:

- the configured detector with its unsupervised threshold, and with each other unsupervised
  threshold method (at its configured level), side by side;
- the other scorers on the same window features, with the configured threshold rule (or,
  for a scorer it does not suit, the quantile rule at the configured target alert rate);
- baselines on raw events (no windows): IsolationForest and the windowed-Gaussian robust z;
- random scores with a 99.5th-percentile threshold: the floor every figure must beat;
- label-tuned figures, kept apart: the best-F1 threshold chosen on the first half of each
  test file and applied to the second half, and the best-F1 ceiling on the whole test;
- the explanation hit rates of the configured detector, explained each way it can be
  (`models.detector.EXPLANATIONS`), and of a random ranking;
- where the labeled events the configured detector did not flag are (inside segments it
  found, or in segments it missed), and whether they stand out, so that a lower threshold
  or a longer alert would take them in, or score like the unlabeled events (where point
  recall is lost, and why).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models.data import TIME_MS_COLUMN, cell_text, first_bad_row, load_events_csv
from models.drift import DriftTracker
from models.detector import EXPLANATIONS, Detector, DetectorSettings, threshold_fits_scorer
from models.evaluation import (ORDINARY_SHARE, best_f1_threshold, composite_f1,
                               detection_summary, false_alarm_runs, hit_rate, point_adjusted,
                               precision_recall_f1, segment_reach,
                               unflagged_in_found_segments)
from models.features import feature_names
from models.incidents import incidents_of
from models.threshold import THRESHOLD_METHODS
from models.train import features_for, windows_for
from streamad.config import JobConfig

log = logging.getLogger(__name__)
LABEL_COLUMN = "label"
PA_K_PERCENT = 20
RANDOM_SEED = 0
MS_PER_DAY = 86_400_000


class EvaluationError(ValueError):
    """The labeled data is missing or malformed; the message says what to provide."""


@dataclass
class KeyData:
    key: str
    train: pd.DataFrame
    test: pd.DataFrame
    interpretation: list[tuple[int, int, list[int]]]


def find_keys(data_dir: Path) -> list[str]:
    keys = sorted({p.name.split("_train.csv")[0] for p in data_dir.glob("*_train.csv*")})
    if not keys:
        raise EvaluationError(
            f"no <key>_train.csv[.gz] files in {data_dir}; a labeled folder holds, per key, a "
            f"train file and a labeled test file (see 'streamad evaluate --help', and \"Your "
            f"own labeled data\" in the README).")
    return keys


def read_interpretation(path: Path, n_metrics: int) -> list[tuple[int, int, list[int]]]:
    """Segments with their metrics, as 0-based metric indices."""
    if not path.is_file():
        return []
    segments = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            span, metrics = line.split(":")
            start, end = (int(v) for v in span.split("-"))
            indices = [int(m) - 1 for m in metrics.split(",") if m.strip()]
        except ValueError:
            raise EvaluationError(f"{path}, line {number}: {line!r} is not "
                                  f"'start-end:m1,m2,...' with whole numbers.") from None
        if any(not 0 <= i < n_metrics for i in indices):
            raise EvaluationError(f"{path}, line {number}: metric numbers must be 1..{n_metrics}.")
        segments.append((start, end, indices))
    return segments


def _labeled_events(path: Path, schema) -> pd.DataFrame:
    """One test file's events, with its labels checked."""
    events = load_events_csv([path], schema, extra_columns=[LABEL_COLUMN])
    labels = events[LABEL_COLUMN]
    not_binary = ~labels.isin([0, 1]).to_numpy()
    if not_binary.any():
        row, line = first_bad_row(not_binary)
        raise EvaluationError(
            f"{path}, line {line}: {LABEL_COLUMN} is {cell_text(labels.iloc[row])}; it must "
            f"be 0 (normal) or 1 (anomalous) ({int(not_binary.sum()):,} such line(s)).")
    return events


def load_key(data_dir: Path, key: str, config: JobConfig) -> KeyData:
    schema = config.schema
    test_paths = sorted(data_dir.glob(f"{key}_test.csv*"))
    if not test_paths:
        raise EvaluationError(f"{data_dir} has {key}_train.csv but no {key}_test.csv[.gz] "
                              f"with a '{LABEL_COLUMN}' column next to it.")
    train = load_events_csv(sorted(data_dir.glob(f"{key}_train.csv*")), schema)
    test = pd.concat([_labeled_events(path, schema) for path in test_paths],
                     ignore_index=True)
    for frame in (train, test):
        frame[schema.key_field] = key
    if train[TIME_MS_COLUMN].max() >= test[TIME_MS_COLUMN].min():
        raise EvaluationError(f"{key}: the test file must follow the train file in time; its "
                              f"first event is not after the train file's last one.")
    interpretation = read_interpretation(data_dir / f"{key}_interpretation_label.txt",
                                         len(schema.metric_fields))
    return KeyData(key, train, test, interpretation)


# ------------------------------------------------------------------ windows -> points
def point_window_starts(times_ms: np.ndarray, size_ms: int, slide_ms: int) -> np.ndarray:
    """Start of the earliest-closing window that holds each event.

    >>> point_window_starts(np.array([0, 59_999, 60_000]), 600_000, 60_000).tolist()
    [-540000, -540000, -480000]
    """
    return (times_ms // slide_ms) * slide_ms + slide_ms - size_ms


@dataclass
class WindowedRun:
    """Every key's train and test events in windows, and the one way to fit a detector on the
    train windows and score the test windows.

    The train events are windowed alone, as `streamad train` windows them, so the detector is
    the one `train` would write; the test events are windowed alone, as the job windows the
    events it reads, so a test window's score is the one the job writes to InfluxDB."""
    config: JobConfig
    data: list[KeyData]
    aggregates: pd.DataFrame
    features: pd.DataFrame
    is_train: np.ndarray  # rows of the train windows; the rest are test windows

    @classmethod
    def of(cls, config: JobConfig, data: list[KeyData]) -> "WindowedRun":
        train = windows_for(pd.concat([d.train for d in data], ignore_index=True), config)
        test = windows_for(pd.concat([d.test.drop(columns=LABEL_COLUMN) for d in data],
                                     ignore_index=True), config)
        aggregates = pd.concat([train, test], ignore_index=True)
        is_train = np.arange(len(aggregates)) < len(train)
        # Two streams: a test window's recent level looks back over test windows only.
        features = features_for(aggregates, config, streams=is_train)
        return cls(config, data, aggregates, features, is_train)

    @classmethod
    def of_folder(cls, config: JobConfig, data_dir: Path,
                  keys: list[str] | None = None) -> "WindowedRun":
        """`of` the labeled folder's keys (all of them unless `keys` are given)."""
        data_dir = Path(data_dir)
        keys = find_keys(data_dir) if keys is None else keys
        return cls.of(config, [load_key(data_dir, key, config) for key in keys])

    def with_statistics(self, statistics: Sequence[str]) -> "WindowedRun":
        """The same windows with the features of other window statistics (the
        configuration's ``features.statistics``, validated as there)."""
        config = dataclasses.replace(self.config, features=dataclasses.replace(
            self.config.features, statistics=tuple(statistics)))
        return dataclasses.replace(self, config=config,
                                   features=features_for(self.aggregates, config,
                                                         streams=self.is_train))

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.config.schema.metric_fields, self.config.features.statistics,
                             self.config.features.include_count)

    @property
    def labels(self) -> dict[str, np.ndarray]:
        return {d.key: d.test[LABEL_COLUMN].to_numpy(np.int64) for d in self.data}

    def score(self, settings: DetectorSettings, explain: bool = False,
              features: pd.DataFrame | None = None, feature_names: list[str] | None = None):
        """The detector fitted on the train windows, its scored test windows (with the
        per-metric shares as columns when `explain`), and per key what each test event takes.
        `features` replaces the windows' features row for row, and `feature_names` the
        features the detector uses (to study other treatments)."""
        features = self.features if features is None else features
        names = self.feature_names if feature_names is None else feature_names
        detector = Detector(names, settings).fit(
            features.loc[self.is_train],
            self.aggregates.loc[self.is_train, self.config.schema.key_field])
        return (detector, *self.score_with(detector, explain, features))

    def score_with(self, detector: Detector, explain: bool = False,
                   features: pd.DataFrame | None = None):
        """`score`'s scored test windows and per-key events, of a detector already fitted."""
        features = self.features if features is None else features
        test = ~self.is_train
        scored, shares = detector.score_with_shares(
            features.loc[test],
            self.aggregates.loc[test, self.config.schema.key_field], explain=explain)
        if explain:
            scored = scored.join(pd.DataFrame(shares, columns=detector.metrics,
                                              index=scored.index))
        return scored, points_of(self.data, self.aggregates.loc[test], scored, self.config)

    def trailing_means(self, windows: int, lag: int = 0, across_split: bool = False
                       ) -> pd.DataFrame:
        """Per window, each metric's window mean (``<metric>__mean``) averaged over the key's
        `windows` windows that end `lag` windows before it (0: the window itself and those
        before it); a window with none before it takes its own mean. Train and test windows
        are kept apart unless `across_split`, where the test's first windows look back into
        the training ones. For the studies of a longer view than one window (scripts/)."""
        key_field = self.config.schema.key_field
        means = self.features[[f"{m}__mean" for m in self.config.schema.metric_fields]]
        groups = [self.aggregates[key_field].to_numpy()]
        if not across_split:
            groups.append(self.is_train)
        order = np.lexsort((self.aggregates["window_start_ms"].to_numpy(), *groups))
        trailing = means.iloc[order].groupby([g[order] for g in groups]).transform(
            lambda column: column.shift(lag).rolling(windows, min_periods=1).mean())
        return trailing.reindex(means.index).fillna(means)


def points_of(data: list[KeyData], aggregates: pd.DataFrame, values: pd.DataFrame,
              config: JobConfig) -> dict[str, pd.DataFrame]:
    """Per key, the window values (score, decision...) taken by each test event."""
    window = config.window
    size_ms, slide_ms = window.size_s * 1000, window.effective_slide_s * 1000
    key_field = config.schema.key_field
    indexed = values.set_index([aggregates[key_field].to_numpy(),
                                aggregates["window_start_ms"].to_numpy()])
    result = {}
    for d in data:
        starts = point_window_starts(d.test[TIME_MS_COLUMN].to_numpy(np.int64), size_ms,
                                     slide_ms)
        index = pd.MultiIndex.from_arrays([np.full(len(starts), d.key), starts])
        result[d.key] = indexed.reindex(index).reset_index(drop=True)
    return result


# ------------------------------------------------------------------ figures
def figures(predicted: np.ndarray, labels: np.ndarray, days: float) -> dict:
    point = precision_recall_f1(predicted, labels)
    detection = detection_summary(predicted, labels)
    return {
        "precision": point["precision"], "recall": point["recall"], "f1": point["f1"],
        "composite_f1": composite_f1(predicted, labels),
        f"pa{PA_K_PERCENT}_f1": precision_recall_f1(
            point_adjusted(predicted, labels, PA_K_PERCENT), labels)["f1"],
        "pa_f1_inflated": precision_recall_f1(point_adjusted(predicted, labels), labels)["f1"],
        "segments_detected": detection["detected"], "segments_missed": detection["missed"],
        "median_delay_points": detection["median_delay_points"],
        "false_alarm_runs_per_day": false_alarm_runs(predicted, labels) / days,
    }


def mean_figures(per_key: dict[str, dict]) -> dict:
    keys = next(iter(per_key.values())).keys()
    mean = {}
    for name in keys:
        values = [f[name] for f in per_key.values() if f[name] is not None]
        if name.startswith("segments_"):
            mean[name] = int(np.sum(values))
        else:
            mean[name] = float(np.mean(values)) if values else None
    return mean


# ------------------------------------------------------------------ the run
@dataclass
class Row:
    name: str
    threshold: str
    per_key: dict
    mean: dict
    group: str = "unsupervised"


def _settings(config: JobConfig, **changes) -> DetectorSettings:
    return dataclasses.replace(config.model.detector_settings(), **changes)


def evaluate(config: JobConfig, data_dir: Path, output_dir: Path, plots: bool = True,
             progress: bool = True, baselines: bool = True) -> dict:
    from tqdm import tqdm

    data_dir = Path(data_dir)
    keys = find_keys(data_dir)
    steps = tqdm(total=len(keys) + 9, desc="evaluate", unit="step", disable=not progress,
                 file=sys.stderr)
    data = []
    for key in keys:
        steps.set_postfix_str(f"reading {key}")
        data.append(load_key(data_dir, key, config))
        steps.update()
    key_field = config.schema.key_field
    metrics = list(config.schema.metric_fields)
    days = {d.key: max(np.ptp(d.test[TIME_MS_COLUMN].to_numpy()) / MS_PER_DAY, 1e-9)
            for d in data}

    steps.set_postfix_str("window features")
    run = WindowedRun.of(config, data)
    labels = run.labels
    steps.update()

    rows: list[Row] = []

    def add_row(name, threshold_name, decisions: dict[str, np.ndarray], group="unsupervised"):
        per_key = {k: figures(decisions[k], labels[k], days[k]) for k in decisions}
        rows.append(Row(name, threshold_name, per_key, mean_figures(per_key), group))

    configured = config.model.detector_settings()
    main_name = f"{configured.kind}, window features (configured)"
    steps.set_postfix_str(f"{configured.kind} (configured)")
    main_detector, main_windows, main_points = run.score(configured, explain=True)
    add_row(main_name, configured.threshold_rule.description,
            {k: p["is_anomaly"].to_numpy(bool) for k, p in main_points.items()})
    steps.update()

    # The same detector and scores; only the rule that turns a key's calibration into a
    # threshold differs.
    for method in THRESHOLD_METHODS:
        other = _settings(config, threshold_method=method)
        if method == configured.threshold_method or not _suits(other):
            continue
        add_row(main_name, other.threshold_rule.description,
                {k: p["score"].to_numpy() > other.threshold_rule.threshold(
                    main_detector.calibrator_for(k)) for k, p in main_points.items()})
    steps.update()

    for kind in ("iforest", "pca", "robust_z", "knn"):
        steps.set_postfix_str(f"{kind}, window features")
        if kind != configured.kind and baselines:
            settings = _settings(config, kind=kind)
            if not _suits(settings):
                settings = dataclasses.replace(settings, threshold_method="quantile")
            _, _, points = run.score(settings)
            add_row(f"{kind}, window features", settings.threshold_rule.description,
                    {k: p["is_anomaly"].to_numpy(bool) for k, p in points.items()})
        steps.update()

    steps.set_postfix_str("raw-event baselines")
    raw_names = [f"{m}__last" for m in metrics]
    raw_train = pd.concat([d.train for d in data], ignore_index=True)
    for kind in ("iforest", "robust_z") if baselines else ():
        raw = _settings(config, kind=kind, baseline="per_key", threshold_method="quantile",
                        target_alert_rate=0.005).for_scores_only()
        detector = Detector(raw_names, raw).fit(
            raw_train[metrics].set_axis(raw_names, axis=1), raw_train[key_field])
        decisions = {}
        for d in data:
            scored = detector.score(d.test[metrics].set_axis(raw_names, axis=1),
                                    d.test[key_field], explain=False)
            decisions[d.key] = scored["is_anomaly"].to_numpy(bool)
        label = "IsolationForest" if kind == "iforest" else "robust z (windowed Gaussian)"
        add_row(f"{label}, raw events (baseline)", "quantile 0.995 per key", decisions)
    steps.update()

    rng = np.random.default_rng(RANDOM_SEED)
    random_decisions = {}
    for d in data:
        reference = rng.random(len(d.train))
        random_decisions[d.key] = rng.random(len(d.test)) > np.quantile(reference, 0.995)
    add_row("random scores (reference)", "quantile 0.995", random_decisions)
    steps.update()

    steps.set_postfix_str("label-tuned thresholds")
    tuned, ceiling, untuned_half = {}, {}, {}
    for key, p in main_points.items():
        scores, lab = p["score"].to_numpy(), labels[key]
        half = len(scores) // 2
        threshold, _ = best_f1_threshold(scores[:half], lab[:half])
        tuned[key] = figures(scores[half:] > threshold, lab[half:], days[key] / 2)
        untuned_half[key] = figures(p["is_anomaly"].to_numpy(bool)[half:], lab[half:],
                                    days[key] / 2)
        _, best = best_f1_threshold(scores, lab)
        ceiling[key] = {"f1": best}
    rows.append(Row(main_name, "best F1 on the test's first half, scored on its second half",
                    tuned, mean_figures(tuned), "label-tuned"))
    rows.append(Row(main_name,
                    f"{configured.threshold_rule.description}, scored on the second half",
                    untuned_half, mean_figures(untuned_half), "label-tuned"))
    rows.append(Row(main_name, "best F1 on the whole test (ceiling)", ceiling,
                    mean_figures(ceiling), "label-tuned"))
    steps.update()

    steps.set_postfix_str("explanations and incidents")
    explanations = explanation_hit_rates(data, main_points, main_detector, metrics)
    # The same detector explained the other way(s), to show what the choice is worth.
    explanation_methods = {configured.explain_with: explanations.get("mean")}
    for method in EXPLANATIONS:
        if method != configured.explain_with and explanations:
            detector = main_detector.explained_with(method)
            _, points = run.score_with(detector, explain=True)
            explanation_methods[method] = explanation_hit_rates(data, points, detector,
                                                                metrics)["mean"]
    incidents = incident_summary(config, data, run.aggregates.loc[~run.is_train],
                                 main_windows, labels, days)
    unflagged = unflagged_labeled_events(data, main_points, labels)
    steps.update()

    report = {
        "config": config.to_dict(),
        "data": {"folder": str(data_dir.resolve()), "keys": keys,
                 "test_events": {d.key: len(d.test) for d in data},
                 "labeled_events": {k: int(v.sum()) for k, v in labels.items()}},
        "mapping": "each test event takes the decision of the earliest-closing window that "
                   "holds it",
        "rows": [dataclasses.asdict(r) for r in rows],
        "explanations": explanations,
        "explanation_methods": explanation_methods,
        "incidents": incidents,
        "unflagged_labeled_events": unflagged,
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "evaluation.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (output_dir / "evaluation.md").write_text(markdown_report(report))
    if plots:
        steps.set_postfix_str("plots")
        from streamad.evaluation_plots import plot_key
        for d in data:
            plot_key(output_dir / f"{d.key}.png", d, main_points[d.key], metrics,
                     labels[d.key], main_detector)
    steps.update()
    steps.close()
    return report


def _suits(settings: DetectorSettings) -> bool:
    """Whether the settings' threshold rule can be used with their scorer."""
    return threshold_fits_scorer(settings.threshold_rule, settings.kind)


def interpreted_events(d: KeyData, columns: list[str], metrics: list[str]
                       ) -> tuple[list[int], list[list[int]], np.ndarray]:
    """The test rows an interpretation label covers, for each the positions in `columns` of
    the metrics its label names (`metrics`: the schema's, in the labels' numbering), and the
    number of the label line (the segment) it belongs to."""
    rows, truth, segments = [], [], []
    for segment, (start, end, true_metrics) in enumerate(d.interpretation):
        for position in range(start, min(end, len(d.test))):
            rows.append(position)
            truth.append([columns.index(metrics[i]) for i in true_metrics])
            segments.append(segment)
    return rows, truth, np.asarray(segments, dtype=np.int64)


def hit_rate_where(rows: np.ndarray, contributions: np.ndarray, truth: list[list[int]],
                   percent: float) -> float:
    """`hit_rate` over the events where the boolean mask `rows` holds."""
    return hit_rate(contributions[rows], [t for t, keep in zip(truth, rows) if keep], percent)


def segment_hit_rate(contributions: np.ndarray, truth: list[list[int]], segments: np.ndarray,
                     percent: float) -> float:
    """HitRate@percent with each labeled segment counted once (the mean over segments of
    their events' hit rates), where the paper's figure counts every event once and so
    weighs a segment by its length."""
    return float(np.mean([hit_rate_where(segments == s, contributions, truth, percent)
                          for s in np.unique(segments)]))


def explanation_hit_rates(data, points, detector: Detector, metrics: list[str]) -> dict:
    """HitRate@100% and @150% over the labeled events with an interpretation label, and
    over those of them the detector flagged (the events its alerts explain)."""
    columns = [m for m in detector.metrics if m in metrics]
    rng = np.random.default_rng(RANDOM_SEED)
    result = {}
    for d in data:
        if not d.interpretation:
            continue
        rows, truth, segments = interpreted_events(d, columns, metrics)
        contributions = points[d.key].loc[rows, columns].to_numpy(dtype=np.float64)
        contributions = np.nan_to_num(contributions)
        random = rng.random(contributions.shape)
        flagged = points[d.key].loc[rows, "is_anomaly"].fillna(False).to_numpy(bool)
        result[d.key] = {"events": len(rows), "flagged_events": int(flagged.sum()),
                         "hit_rate_100": hit_rate(contributions, truth, 100),
                         "hit_rate_150": hit_rate(contributions, truth, 150),
                         "random_hit_rate_150": hit_rate(random, truth, 150),
                         "flagged_hit_rate_100": hit_rate_where(flagged, contributions,
                                                                truth, 100),
                         "flagged_hit_rate_150": hit_rate_where(flagged, contributions,
                                                                truth, 150),
                         "segment_hit_rate_150": segment_hit_rate(contributions, truth,
                                                                  segments, 150)}
    if result:
        # A key none of whose labeled events was flagged has no flagged hit rate (NaN).
        result["mean"] = {name: float(np.nanmean([r[name] for r in result.values()]))
                          for name in ("hit_rate_100", "hit_rate_150", "random_hit_rate_150",
                                       "flagged_hit_rate_100", "flagged_hit_rate_150",
                                       "segment_hit_rate_150")}
    return result


def incident_summary(config, data, test_aggregates, scored, labels, days) -> dict:
    """Incidents the alert policy opens on the scored test windows, and how many match a
    label."""
    key_field = config.schema.key_field
    size_ms = config.window.size_s * 1000
    windows = test_aggregates[[key_field, "window_end_ms"]].join(scored)
    result = {}
    for d in data:
        own = windows[windows[key_field] == d.key].sort_values("window_end_ms")
        found = incidents_of(d.key, zip(own.window_end_ms, own.is_anomaly, own.score,
                                        own.grade), config.alerts.policy(config.window))
        times = d.test[TIME_MS_COLUMN].to_numpy()
        labeled_times = times[labels[d.key] == 1]
        false = 0
        for incident in found:
            end = incident.end if incident.end is not None else times[-1]
            covered = (labeled_times >= incident.start - size_ms) & (labeled_times < end)
            false += not covered.any()
        result[d.key] = {"incidents": len(found), "false_incidents": false,
                         "false_alerts_per_day": false / days[d.key],
                         "drift_alerts": drift_alerts_of(d.key, own, config)}
    result["mean"] = {"incidents": float(np.mean([r["incidents"] for r in result.values()])),
                      "false_alerts_per_day": float(np.mean(
                          [r["false_alerts_per_day"] for r in result.values()]))}
    return result


def unflagged_labeled_events(data: list[KeyData], points: dict[str, pd.DataFrame],
                             labels: dict[str, np.ndarray]) -> dict:
    """Per key, where the labeled events the detector did not flag are. In the segments it
    found: how many, and how many of them stand out (`unflagged_in_found_segments`). In the
    segments none of whose events it flagged (listed with their times and
    `models.evaluation.segment_reach`'s figures): how many, those in segments that stand out,
    which a lower threshold would find, and those in segments that look ordinary, which no
    threshold finds without flagging far more unlabeled events (a segment no window holds is
    neither)."""
    result = {}
    for d in data:
        p, key_labels = points[d.key], labels[d.key]
        scores, flagged = p["score"].to_numpy(), p["is_anomaly"].fillna(False).to_numpy(bool)
        times = d.test[TIME_MS_COLUMN].to_numpy(np.int64)
        missed = [dict(segment, start_ms=int(times[segment["start"]]),
                       end_ms=int(times[segment["end"] - 1]))
                  for segment in segment_reach(scores, p["threshold"].to_numpy(), flagged,
                                               key_labels)
                  if segment["flagged_share"] == 0]
        in_found = unflagged_in_found_segments(scores, flagged, key_labels)
        in_missed_standing_out = sum(segment["points"] for segment in missed
                                     if segment["ordinary"] is False)
        labeled = key_labels == 1
        labeled_events, flagged_events = int(labeled.sum()), int((flagged & labeled).sum())
        # Point F1 were every unflagged event that stands out taken in and no unlabeled
        # event more flagged: how far the events that stand out could take it.
        found = flagged_events + in_found["standing_out"] + in_missed_standing_out
        bound = 2 * found / max(2 * found + int((flagged & ~labeled).sum())
                                + labeled_events - found, 1)
        result[d.key] = {
            "labeled_events": labeled_events,
            "flagged_events": flagged_events,
            "unflagged_in_found_segments": in_found["events"],
            "unflagged_in_found_standing_out": in_found["standing_out"],
            "missed_segments": missed,
            "in_missed_segments": sum(segment["points"] for segment in missed),
            "in_missed_standing_out": in_missed_standing_out,
            "in_missed_ordinary": sum(segment["points"] for segment in missed
                                      if segment["ordinary"]),
            "f1_with_the_standing_out_flagged": bound}
    return result


def drift_alerts_of(key: str, windows: pd.DataFrame, config: JobConfig) -> list[dict]:
    """The drift alerts the job would raise on a key's scored windows (in time order)."""
    tracker = DriftTracker(key, config.alerts.drift_policy())
    alerts = []
    for end_ms, out_of_range in zip(windows.window_end_ms, windows.out_of_range):
        for kind, run in tracker.update(int(end_ms), out_of_range):
            if kind == "drift":
                alerts.append({"metric": str(run.metric), "since_ms": run.since,
                               "declared_ms": run.declared_at})
    return alerts


def _drift_cell(alerts: list[dict]) -> str:
    """'3 (m04, m06)': how many drift alerts, and of which metrics."""
    if not alerts:
        return "-"
    return f"{len(alerts)} ({', '.join(sorted({a['metric'] for a in alerts}))})"


def _cell(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}f}"


def _unflagged_lines(unflagged: dict, keys: list[str], longest: int = 10) -> list[str]:
    lines = ["", "Where the labeled events the configured detector did not flag are. In the "
             "segments it found (flagged some event of): how many, and how many of them stand "
             f"out (score above all but {ORDINARY_SHARE:.0%} of the unlabeled events), which an "
             "alert kept open while the score stays that high would take in. In the segments "
             "it missed (flagged none of): their events, in segments that stand out (their "
             "median event does), which a lower threshold would find, and in segments that "
             "look ordinary, which no threshold finds without flagging more of the unlabeled "
             "events than that:", "",
             "| key | labeled events | flagged | not flagged, in found segments | of them "
             "standing out | segments missed | their events | in segments standing out | in "
             "segments looking ordinary |", "|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        m = unflagged[key]
        lines.append(f"| {key} | {m['labeled_events']:,} | {m['flagged_events']:,} | "
                     f"{m['unflagged_in_found_segments']:,} | "
                     f"{m['unflagged_in_found_standing_out']:,} | "
                     f"{len(m['missed_segments'])} | {m['in_missed_segments']:,} | "
                     f"{m['in_missed_standing_out']:,} | {m['in_missed_ordinary']:,} |")
    bounds = [unflagged[key]["f1_with_the_standing_out_flagged"] for key in keys]
    lines += ["", "Were every unflagged event that stands out flagged too, and no unlabeled "
              f"event more, the mean point F1 would be {np.mean(bounds):.3f} ("
              + ", ".join(f"{key} {bound:.3f}" for key, bound in zip(keys, bounds))
              + "). Any gain beyond that takes in events that score like unlabeled ones, "
              "and false alarms with them."]
    segments = sorted(((key, segment) for key in keys
                       for segment in unflagged[key]["missed_segments"]),
                      key=lambda item: -item[1]["points"])[:longest]
    if segments:
        lines += ["", f"The {len(segments)} longest of them (score over the threshold at "
                  "their events; the share of the key's unlabeled events that score above "
                  "the segment's median):", "",
                  "| key | from | to | events | peak / threshold | median / threshold | "
                  "unlabeled events above its median |", "|---|---|---|---|---|---|---|"]
        for key, segment in segments:
            lines.append(f"| {key} | {_time(segment['start_ms'])} | "
                         f"{_time(segment['end_ms'])} | {segment['points']} | "
                         f"{_cell(segment['peak_over_threshold'], 2)} | "
                         f"{_cell(segment['median_over_threshold'], 2)} | "
                         f"{_percent(segment['unlabeled_above_median'])} |")
    return lines


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"


def _time(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def markdown_report(report: dict) -> str:
    lines = [f"# Evaluation on {len(report['data']['keys'])} keys of "
             f"{report['data']['folder']}", "",
             "Means over keys. Point-wise figures count every event once; "
             f"PA%K uses K = {PA_K_PERCENT}. Plain point-adjusted F1 inflates: see the "
             "random-score row.", "",
             "| detector | threshold | point P | point R | point F1 | composite F1 | "
             f"PA%{PA_K_PERCENT} F1 | PA F1 (inflated) | segments found / missed | "
             "median delay (events) | false alarm runs / day |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if row["group"] != "unsupervised":
            continue
        m = row["mean"]
        lines.append(f"| {row['name']} | {row['threshold']} | {_cell(m['precision'])} | "
                     f"{_cell(m['recall'])} | **{_cell(m['f1'])}** | {_cell(m['composite_f1'])} | "
                     f"{_cell(m[f'pa{PA_K_PERCENT}_f1'])} | {_cell(m['pa_f1_inflated'])} | "
                     f"{m['segments_detected']} / {m['segments_missed']} | "
                     f"{_cell(m['median_delay_points'], 1)} | "
                     f"{_cell(m['false_alarm_runs_per_day'], 2)} |")
    lines += ["", "Label-tuned (uses the labels; never an unsupervised result):", "",
              "| detector | threshold | point F1 |", "|---|---|---|"]
    for row in report["rows"]:
        if row["group"] == "label-tuned":
            lines.append(f"| {row['name']} | {row['threshold']} | {_cell(row['mean']['f1'])} |")
    main = report["rows"][0]
    keys = report["data"]["keys"]
    lines += ["", f"Per key, {main['name']} ({main['threshold']}):", "",
              "| key | point P | point R | point F1 | composite F1 | "
              f"PA%{PA_K_PERCENT} F1 | incidents | false incidents / day | drift alerts | "
              "HitRate@150%, all / flagged |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        f = main["per_key"][key]
        inc = report["incidents"][key]
        explained = report["explanations"].get(key)
        hit_rates = (f"{_cell(explained['hit_rate_150'], 2)} / "
                     f"{_cell(explained['flagged_hit_rate_150'], 2)}" if explained else "–")
        lines.append(f"| {key} | {_cell(f['precision'])} | {_cell(f['recall'])} | "
                     f"{_cell(f['f1'])} | {_cell(f['composite_f1'])} | "
                     f"{_cell(f[f'pa{PA_K_PERCENT}_f1'])} | {inc['incidents']} | "
                     f"{_cell(inc['false_alerts_per_day'], 2)} | "
                     f"{_drift_cell(inc['drift_alerts'])} | {hit_rates} |")
    lines += _unflagged_lines(report["unflagged_labeled_events"], keys)
    if report["explanations"]:
        configured = report["config"]["model"]["explain_with"]
        lines += ["", "Explanations (HitRate, OmniAnomaly's definition), over all labeled events "
                  "with an interpretation label, over those of them the detector flagged "
                  "(what its alerts explain), and with each labeled segment counted once (the "
                  "paper's figure weighs a segment by its length):", "",
                  "| explanation | @100% | @150% | flagged, @100% | flagged, @150% | "
                  "@150%, each segment once |",
                  "|---|---|---|---|---|---|"]
        for method, mean in report["explanation_methods"].items():
            name = f"{method} (configured)" if method == configured else method
            lines.append(f"| {name} | {_cell(mean['hit_rate_100'])} | "
                         f"{_cell(mean['hit_rate_150'])} | "
                         f"{_cell(mean['flagged_hit_rate_100'])} | "
                         f"{_cell(mean['flagged_hit_rate_150'])} | "
                         f"{_cell(mean['segment_hit_rate_150'])} |")
        random = report["explanations"]["mean"]["random_hit_rate_150"]
        lines.append(f"| a random ranking | | {_cell(random)} | | | |")
    return "\n".join(lines) + "\n"
