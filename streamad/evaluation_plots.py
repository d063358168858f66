"""One PNG per key for `streamad evaluate`: what a person checks before trusting a detector.

Top: the metrics that drove the most alerts, over the test period, with labeled anomalous
segments shaded: orange where the detector flagged any of the segment's events, grey where it
missed the segment. Bottom: the anomaly grade with the key's alert threshold (as a grade), the
flagged events, and the same shading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.detector import Detector
from models.evaluation import segments

METRICS_SHOWN = 4
FOUND_COLOR, MISSED_COLOR = "orange", "dimgrey"


def plot_key(path: Path, data, points: pd.DataFrame, metrics: list[str], labels: np.ndarray,
             detector: Detector) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = (data.test["event_time_ms"].to_numpy() - data.test["event_time_ms"].iloc[0]) / 3.6e6
    flagged = points["is_anomaly"].fillna(False).to_numpy(bool)
    shares = points[[m for m in metrics if m in points.columns]]
    weight = shares[flagged].sum() if flagged.any() else shares.sum()
    shown = list(weight.sort_values(ascending=False).index[:METRICS_SHOWN])

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2]})
    for metric in shown:
        top.plot(hours, data.test[metric].to_numpy(), linewidth=0.6, label=metric)
    top.set_ylabel("metric value")
    top.legend(loc="upper right", fontsize=8, title="top drivers of alerts")
    top.set_title(f"{data.key}: labeled anomalies shaded, orange where found, grey where "
                  f"missed")

    key = data.key
    threshold_grade = float(detector.calibrator_for(key).grade(
        np.array([detector.threshold_for(key)]))[0])
    bottom.plot(hours, points["grade"].to_numpy(), linewidth=0.6, color="black", label="grade")
    bottom.axhline(threshold_grade, color="red", linewidth=0.8, linestyle="--",
                   label=f"threshold (grade {threshold_grade:.2f})")
    bottom.scatter(hours[flagged], np.full(flagged.sum(), 1.02), s=2, color="red",
                   label="flagged", zorder=3)
    bottom.set_ylim(0, 1.06)
    bottom.set_ylabel("anomaly grade")
    bottom.set_xlabel("hours into the test period")
    bottom.legend(loc="upper right", fontsize=8)
    for axis in (top, bottom):
        for start, end in segments(labels):
            found = flagged[start:end].any()
            axis.axvspan(hours[start], hours[min(end, len(hours) - 1)],
                         color=FOUND_COLOR if found else MISSED_COLOR,
                         alpha=0.3 if found else 0.25, linewidth=0)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
