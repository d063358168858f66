"""Evaluation measures, and `streamad evaluate` on real SMD data."""

import json

import numpy as np
import pytest

from models.evaluation import (ORDINARY_SHARE, best_f1_threshold, composite_f1,
                               detection_summary, hit_rate, point_adjusted,
                               precision_recall_f1, segment_reach)


def test_point_adjustment_inflates_random_flags_and_pa_k_does_not():
    rng = np.random.default_rng(0)
    labels = np.zeros(20_000, dtype=int)
    for start in range(1000, 20_000, 2000):
        labels[start:start + 300] = 1
    flags = rng.random(20_000) > 0.995
    plain = precision_recall_f1(flags, labels)["f1"]
    adjusted = precision_recall_f1(point_adjusted(flags, labels), labels)["f1"]
    pa20 = precision_recall_f1(point_adjusted(flags, labels, 20), labels)["f1"]
    assert plain < 0.05 and adjusted > 0.5 and pa20 < 0.05


def test_detection_summary_and_composite_f1():
    labels = [0, 1, 1, 1, 0, 0, 1, 1, 0]
    flags = [0, 0, 0, 1, 0, 0, 0, 0, 1]
    summary = detection_summary(flags, labels)
    assert (summary["detected"], summary["missed"], summary["median_delay_points"]) == (1, 1, 2)
    # point precision 1/2, segment recall 1/2
    assert composite_f1(flags, labels) == pytest.approx(0.5)


def test_best_f1_threshold_is_a_ceiling_over_all_thresholds():
    rng = np.random.default_rng(1)
    labels = (rng.random(500) > 0.9).astype(int)
    scores = labels + rng.normal(scale=0.7, size=500)
    threshold, best = best_f1_threshold(scores, labels)
    assert precision_recall_f1(scores >= threshold, labels)["f1"] == pytest.approx(best)
    for t in np.quantile(scores, np.linspace(0.5, 0.99, 20)):
        assert precision_recall_f1(scores >= t, labels)["f1"] <= best + 1e-12


def test_hit_rate_counts_true_metrics_in_the_top_ranks():
    contributions = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    # row 2: the top two are metrics 0 and 1, one of its two true ones
    assert hit_rate(contributions, [[1], [1, 2]], 100) == pytest.approx((1 + 0.5) / 2)
    # at 150% row 2 takes floor(3) = 3 metrics: both true ones
    assert hit_rate(contributions, [[1], [1, 2]], 150) == pytest.approx(1.0)


def test_segment_reach_tells_a_segment_below_the_threshold_from_one_that_looks_ordinary():
    rng = np.random.default_rng(2)
    scores = rng.random(1000)  # unlabeled: uniform in [0, 1)
    labels = np.zeros(1000, dtype=int)
    labels[100:110] = 1
    scores[100:110] = 1.5  # above every unlabeled score, below the threshold
    labels[500:540] = 1
    scores[500:540] = 0.5  # about half the unlabeled scores are above it
    labels[900:903] = 1
    scores[900:903] = [np.nan, 3.0, 2.5]  # found; one event without a window
    thresholds = np.full(1000, 2.0)
    predicted = scores > 2.0
    standing_out, ordinary, found = segment_reach(scores, thresholds, predicted, labels)
    assert (standing_out["start"], standing_out["end"], standing_out["points"]) == (100, 110, 10)
    assert standing_out["flagged_share"] == 0 and standing_out["unlabeled_above_median"] == 0
    assert standing_out["peak_over_threshold"] == pytest.approx(0.75)
    assert not standing_out["ordinary"]
    assert ordinary["flagged_share"] == 0 and ordinary["ordinary"]
    assert ordinary["unlabeled_above_median"] == pytest.approx(0.5, abs=0.06)
    assert ordinary["median_over_threshold"] == pytest.approx(0.25)
    assert found["flagged_share"] == pytest.approx(2 / 3)
    assert found["peak_over_threshold"] == pytest.approx(1.5)
    assert found["unlabeled_above_median"] < ORDINARY_SHARE  # its median is 2.5
    # Where no window holds the events, the threshold is unknown, and so is the multiple.
    (unscored,) = segment_reach([1.0, np.nan, np.nan, 0.5], [2.0, np.nan, np.nan, 2.0],
                                [0, 0, 0, 0], [0, 1, 1, 0])
    assert unscored["peak_over_threshold"] is None
    assert unscored["unlabeled_above_median"] is None and unscored["ordinary"] is None


def test_segment_hit_rate_counts_each_segment_once():
    from streamad.evaluate import segment_hit_rate
    # Three events of segment 0 name metric 1 right; the one event of segment 1 misses.
    contributions = np.array([[0.1, 0.9]] * 3 + [[0.9, 0.1]])
    truth, segments = [[1]] * 4, np.array([0, 0, 0, 1])
    assert hit_rate(contributions, truth, 100) == pytest.approx(0.75)
    assert segment_hit_rate(contributions, truth, segments, 100) == pytest.approx(0.5)


def test_evaluate_writes_a_report_with_baselines_random_row_and_plots(labeled_folder,
                                                                       tmp_path, monkeypatch):
    from streamad.cli import main
    # Four days of two machines: at the default 50 times the median no labeled minute of
    # these is flagged, and the flagged-minute explanation figures need some.
    monkeypatch.setenv("STREAMAD__MODEL__MEDIAN_MULTIPLE", "20")
    out = tmp_path / "report"
    code = main(["evaluate", "--data-dir", str(labeled_folder), "--output", str(out),
                 "--no-progress"])
    assert code == 0
    report = json.loads((out / "evaluation.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert any("raw events (baseline)" in n for n in names)
    assert sum("window features" in n for n in names) >= 4
    random_row = next(r for r in report["rows"] if r["name"].startswith("random"))
    main_row = report["rows"][0]
    assert set(main_row["per_key"]) == {"machine-2-7", "machine-3-3"}
    ceiling = next(r for r in report["rows"] if r["threshold"].endswith("(ceiling)"))
    assert ceiling["mean"]["f1"] > 0.3 > random_row["mean"]["f1"]
    assert main_row["mean"]["precision"] > random_row["mean"]["precision"]
    assert 0 <= report["explanations"]["mean"]["hit_rate_150"] <= 1
    for key in ("machine-2-7", "machine-3-3"):
        explained = report["explanations"][key]
        assert 0 < explained["flagged_events"] <= explained["events"]
        assert 0 <= explained["flagged_hit_rate_150"] <= 1
        assert 0 <= explained["segment_hit_rate_150"] <= 1
    # Every explanation method is measured on the same detector, the configured one first.
    methods = report["explanation_methods"]
    assert list(methods) == ["rarity", "deviation", "score"]
    assert methods["rarity"] == report["explanations"]["mean"]
    assert methods["score"]["hit_rate_150"] != methods["rarity"]["hit_rate_150"]
    assert methods["deviation"]["hit_rate_100"] != methods["rarity"]["hit_rate_100"]
    assert {r["group"] for r in report["rows"]} == {"unsupervised", "label-tuned"}
    # Where the unflagged labeled events are: the missed segments are the ones the main row
    # counts as missed, with nothing flagged.
    unflagged = report["unflagged_labeled_events"]
    for key in ("machine-2-7", "machine-3-3"):
        u = unflagged[key]
        segments = u["missed_segments"]
        assert len(segments) == main_row["per_key"][key]["segments_missed"]
        assert all(s["flagged_share"] == 0 and s["end"] - s["start"] == s["points"]
                   for s in segments)
        assert u["in_missed_segments"] == sum(s["points"] for s in segments)
        assert u["in_missed_ordinary"] + u["in_missed_standing_out"] <= u["in_missed_segments"]
        assert u["in_missed_segments"] < u["labeled_events"]
        # Every labeled event is flagged, or unflagged in a found segment, or in a missed one.
        assert (u["flagged_events"] + u["unflagged_in_found_segments"]
                + u["in_missed_segments"]) == u["labeled_events"]
        assert 0 <= u["unflagged_in_found_standing_out"] <= u["unflagged_in_found_segments"]
        assert u["flagged_events"] == round(main_row["per_key"][key]["recall"]
                                            * u["labeled_events"])
        # Taking in more labeled events and no unlabeled one can only raise F1.
        f1 = main_row["per_key"][key]["f1"]
        assert f1 - 1e-9 <= u["f1_with_the_standing_out_flagged"] <= 1
        if u["unflagged_in_found_standing_out"] + u["in_missed_standing_out"] == 0:
            assert u["f1_with_the_standing_out_flagged"] == pytest.approx(f1)
    markdown = (out / "evaluation.md").read_text()
    assert "| random scores (reference)" in markdown
    u = unflagged["machine-3-3"]
    assert (f"| machine-3-3 | {u['labeled_events']:,} | {u['flagged_events']:,} | "
            f"{u['unflagged_in_found_segments']:,} | {u['unflagged_in_found_standing_out']:,} | "
            f"{len(u['missed_segments'])} | {u['in_missed_segments']:,} | "
            f"{u['in_missed_standing_out']:,} | {u['in_missed_ordinary']:,} |") in markdown
    explained = report["explanations"]["machine-2-7"]
    assert (f"| {explained['hit_rate_150']:.2f} / {explained['flagged_hit_rate_150']:.2f} |"
            in markdown)
    for machine in ("machine-2-7", "machine-3-3"):
        assert (out / f"{machine}.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_says_what_is_missing(tmp_path, capsys):
    from streamad.cli import main
    assert main(["evaluate", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o")]) == 1
    assert "no <key>_train.csv" in capsys.readouterr().err


@pytest.mark.parametrize("file, column, value, says", [
    ("machine-2-7_test.csv", 3, "abc", "m02 is 'abc', not a finite number (1 such line(s))"),
    ("machine-2-7_train.csv", 1, "", "m00 is empty, not a finite number (1 such line(s))"),
    ("machine-3-3_test.csv", -1, "2", "label is 2; it must be 0 (normal) or 1 (anomalous)"),
])
def test_evaluate_names_the_line_of_a_bad_value(labeled_folder, tmp_path, capsys, file, column,
                                                value, says):
    from streamad.cli import main
    path = labeled_folder / file
    lines = path.read_text().splitlines()
    cells = lines[41].split(",")  # line 42 of the file
    cells[column] = value
    lines[41] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    assert main(["evaluate", "--data-dir", str(labeled_folder), "--output",
                 str(tmp_path / "o"), "--no-plots", "--no-progress"]) == 1
    assert f"error: {path}, line 42: {says}" in capsys.readouterr().err
