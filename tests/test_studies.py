"""The study scripts (scripts/*_study.py), run as the README says on real SMD data: each
measures its variants against the configured detector, so its row for the configured detector
must give the figures `streamad evaluate` gives."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = ("machine-2-7", "machine-3-3")  # the labeled_folder fixture's keys, in order


@pytest.fixture
def evaluation(labeled_folder, tmp_path):
    """evaluate's report of the configured detector on labeled_folder."""
    from streamad.cli import main
    output = tmp_path / "evaluation"
    assert main(["evaluate", "--data-dir", str(labeled_folder), "--output", str(output),
                 "--no-plots", "--no-progress", "--no-baselines"]) == 0
    return json.loads((output / "evaluation.json").read_text())


@pytest.fixture
def evaluated(evaluation):
    """evaluate's point F1 of the configured detector, per key, on labeled_folder."""
    per_key = evaluation["rows"][0]["per_key"]
    return {key: per_key[key]["f1"] for key in KEYS}


def run_study(name, labeled_folder, tmp_path):
    """The report's table rows (cells split), after running the study as the README does."""
    output = tmp_path / f"{name}.md"
    completed = subprocess.run(
        [sys.executable, f"scripts/{name}.py", "--data-dir", str(labeled_folder),
         "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    rows = [line.strip("|").split(" | ") for line in output.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("|---")]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def mean_of(f1_by_key):
    return f"{sum(f1_by_key.values()) / len(f1_by_key):.3f}"


def test_alternatives_study_starts_from_the_configured_detector(labeled_folder, tmp_path,
                                                                 evaluated):
    rows = run_study("alternatives_study", labeled_folder, tmp_path)
    assert rows["none (the configured detector)"][0] == mean_of(evaluated)
    changes = [name for name, cells in rows.items() if len(cells) == 7
               and not name.startswith("**") and name != "change"]
    assert len(changes) == 23  # the configured detector and twenty-two changes
    for name in changes:
        f1, held_out, ceiling = (float(rows[name][i]) for i in (0, 4, 5))
        assert 0.0 <= f1 <= 1.0 and 0.0 <= held_out <= 1.0, name
        # the label-tuned ceiling is the best of all thresholds, the multiples among them
        assert float(rows[name][2]) <= ceiling + 1e-3, name
    threshold_rules = [name for name, cells in rows.items() if len(cells) == 5
                       and name != "threshold rule"]
    # four that follow the test stream, the held one, two raised ones and three natural breaks
    assert len(threshold_rules) == 10
    for name in threshold_rules:
        assert 0.0 <= float(rows[name][1]) <= 1.0, name
    # The held rule's candidates include the configured multiple held to 1 (not held), and the
    # raised rules' the configured multiple raised by a factor 0 (not raised): each is the
    # configured rule, so their best in sample cannot be below the configured F1.
    held_or_raised = [name for name in threshold_rules if "hysteresis" in name
                      or "raised" in name]
    assert len(held_or_raised) == 3
    for name in held_or_raised:
        assert float(rows[name][1]) >= float(rows["none (the configured detector)"][0]) - 1e-9


@pytest.mark.parametrize("study, configured_row", [
    ("context_study", "none (as configured) (191 features)"),
    ("drift_study", "none (as configured)"),
])
def test_context_and_drift_studies_start_from_the_configured_detector(
        study, configured_row, labeled_folder, tmp_path, evaluated):
    rows = run_study(study, labeled_folder, tmp_path)
    cells = rows[configured_row]
    assert cells[0] == mean_of(evaluated)
    assert cells[-len(KEYS):] == [f"{evaluated[key]:.2f}" for key in KEYS]


def test_drift_study_takes_out_only_what_the_drift_tracker_declares(labeled_folder):
    sys.path.insert(0, str(REPO / "scripts"))
    from drift_study import dropped_while_drifting, scored_with_score_shares
    from models.drift import DriftPolicy
    from streamad.config import load_config
    from streamad.evaluate import WindowedRun

    config = load_config()
    run = WindowedRun.of_folder(config, labeled_folder)
    settings = config.model.detector_settings().for_scores_only()
    configured = run.score(settings)[2]
    detector, scored = scored_with_score_shares(run, settings)
    # Never declared: every decision is the configured one.
    never, shares = dropped_while_drifting(run, detector, scored, DriftPolicy(10 ** 6, 12))
    assert set(shares.values()) == {0.0}
    # Declared at the first out-of-range window: scores only go down, so alerts only go.
    at_once, shares = dropped_while_drifting(run, detector, scored, DriftPolicy(1, 1))
    assert sum(shares.values()) > 0, "the slices should have out-of-range windows"
    for key in KEYS:
        flagged = configured[key]["is_anomaly"].to_numpy(bool)
        assert (never[key]["is_anomaly"].to_numpy(bool) == flagged).all()
        assert not (at_once[key]["is_anomaly"].to_numpy(bool) & ~flagged).any()
    assert any((at_once[key]["is_anomaly"] != configured[key]["is_anomaly"]).any()
               for key in KEYS), "taking out the out-of-range metrics should end some alerts"


def test_scale_study_row_for_the_configured_scale_is_evaluates(labeled_folder, tmp_path,
                                                                evaluated):
    rows = run_study("scale_study", labeled_folder, tmp_path)
    cells = rows["tail, q = 0.999 (a decade around q)"]  # the configured scale
    assert cells[0] == mean_of(evaluated)
    assert cells[1:1 + len(KEYS)] == [f"{evaluated[key]:.2f}" for key in KEYS]


def test_explanation_study_starts_from_the_configured_explanations(labeled_folder, tmp_path,
                                                                   evaluation):
    rows = run_study("explanation_study", labeled_folder, tmp_path)
    configured = next(cells for name, cells in rows.items() if name.startswith("as configured"))
    explained = evaluation["explanations"]
    assert configured[:2] == [f"{explained['mean']['hit_rate_100']:.3f}",
                              f"{explained['mean']['hit_rate_150']:.3f}"]
    assert configured[-1].split() == [f"{explained[key]['hit_rate_150']:.2f}" for key in KEYS]
    rankings = [name for name, cells in rows.items() if len(cells) == 5 and name != "ranking"]
    # configured, the study's rarity, three other readings, two of each recent level's span,
    # three of each trailing length and six of companions
    assert len(rankings) == 26
    for name in rankings:
        assert 0.0 <= float(rows[name][1]) <= 1.0, name
    # one row per key for its longest labeled segment, its labeled metrics' rarity as a range
    for key in KEYS:
        assert rows[key][2].startswith("1 in "), rows[key]


def test_explanation_study_companions_lend_rarity_only_to_metrics_that_moved_together(
        labeled_folder):
    sys.path.insert(0, str(REPO / "scripts"))
    from explanation_study import StudyRarity
    from streamad.config import load_config
    from streamad.evaluate import WindowedRun

    run = WindowedRun.of_folder(load_config(), labeled_folder)
    rarity = StudyRarity(run)
    key = KEYS[0]
    means = run.features.loc[run.is_train & (rarity.keys == key),
                             [f"{m}__mean" for m in rarity.metrics]]
    correlation = means.corr().abs().to_numpy()
    np.fill_diagonal(correlation, 0.0)
    rare = int(np.nanargmax(np.nanmax(correlation, axis=1)))  # a metric with a companion
    companions = correlation[rare] >= 0.9
    assert companions.any() and not companions.all()
    decades = np.zeros((len(rarity.test_rows), len(rarity.metrics)))
    decades[:, rare] = 2.0
    rows = rarity.keys[rarity.test_rows] == key
    assert np.array_equal(rarity.with_correlated(decades, 0.9, 0.0), decades)
    lent = rarity.with_correlated(decades, 0.9, 1.0)[rows]
    assert (lent[:, companions] > 0).all()
    assert (lent[:, ~companions & (np.arange(len(rarity.metrics)) != rare)] == 0).all()
    assert (lent[:, rare] == 2.0).all(), "the rare metric's own rarity is kept"


def test_drift_study_retrains_each_day_on_nothing_but_what_came_before(labeled_folder):
    sys.path.insert(0, str(REPO / "scripts"))
    from drift_study import DAY_MS, retrained_daily
    from streamad.config import load_config
    from streamad.evaluate import WindowedRun

    config = load_config()
    run = WindowedRun.of_folder(config, labeled_folder)
    settings = config.model.detector_settings().for_scores_only()
    _, configured, _ = run.score(settings)
    # Taking in nothing, every day's detector is the one fitted on the train half.
    unchanged = retrained_daily(run, settings, accept_share=0.0)
    assert np.allclose(unchanged["score"], configured["score"])
    assert np.allclose(unchanged["threshold"], configured["threshold"])
    # Taking in every window below the threshold: the first day is still scored by the train
    # half's detector alone (causal), and the later days by one that learned from it.
    retrained = retrained_daily(run, settings, accept_share=1.0)
    test = run.aggregates.loc[~run.is_train]
    first_day = test.groupby(config.schema.key_field)["window_start_ms"].transform(
        lambda starts: starts - starts.min() < DAY_MS)
    assert np.allclose(retrained.loc[first_day, "score"], configured.loc[first_day, "score"])
    assert not np.allclose(retrained.loc[~first_day, "score"],
                           configured.loc[~first_day, "score"])
