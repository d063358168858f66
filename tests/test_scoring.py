"""Scorer contract, thresholds, artifacts, and the scoring UDF run without Flink."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from models.artifact import (ArtifactError, load_artifact, save_artifact, sha256_of,
                             verify_artifact)
from models.features import aggregate_columns, window_aggregates
from models.scorers import IsolationForestScorer
from models.threshold import threshold_for_alert_rate
from udfs.scoring import ScoreWindows

SCORERS = [IsolationForestScorer(n_estimators=50, random_state=0)]


@pytest.fixture
def normal_data():
    return np.random.default_rng(1).normal(size=(400, 4))


@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: type(s).__name__)
class TestScorerContract:
    def test_fit_returns_self_and_sets_fitted_attributes(self, scorer, normal_data):
        assert scorer.fit(normal_data) is scorer
        assert scorer.n_features_in_ == 4

    def test_scoring_before_fit_is_refused(self, scorer, normal_data):
        from sklearn.base import clone
        with pytest.raises(NotFittedError):
            clone(scorer).score_samples(normal_data)

    def test_wrong_feature_count_is_refused(self, scorer, normal_data):
        scorer.fit(normal_data)
        with pytest.raises(ValueError, match="X has 3 features"):
            scorer.score_samples(normal_data[:, :3])

    def test_higher_means_more_anomalous(self, scorer, normal_data):
        scorer.fit(normal_data)
        outliers = normal_data[:20] + 10
        assert scorer.score_samples(outliers).min() > np.median(scorer.score_samples(normal_data))

    def test_non_finite_features_do_not_fail_scoring(self, scorer, normal_data):
        scorer.fit(normal_data)
        rows = normal_data[:3].copy()
        rows[0, 1] = np.nan
        assert np.isfinite(scorer.score_samples(rows)).all()

    def test_scores_are_deterministic(self, scorer, normal_data):
        first = scorer.fit(normal_data).score_samples(normal_data)
        assert np.array_equal(first, scorer.score_samples(normal_data))


def test_threshold_gives_the_target_alert_rate(normal_data):
    scores = IsolationForestScorer(n_estimators=50, random_state=0).fit(
        normal_data).score_samples(normal_data)
    threshold = threshold_for_alert_rate(scores, 0.05)
    assert (scores > threshold).mean() == pytest.approx(0.05, abs=0.005)


def test_threshold_needs_finite_scores():
    with pytest.raises(ValueError, match="no finite training scores"):
        threshold_for_alert_rate([np.nan], 0.01)


def _artifact(tmp_path, features=("a", "b", "c", "d")):
    X = np.random.default_rng(2).normal(size=(200, len(features)))
    scorer = IsolationForestScorer(n_estimators=20, random_state=0).fit(X)
    return save_artifact(tmp_path / "model", scorer,
                         {"model_kind": "iforest", "feature_names": list(features),
                          "threshold": 0.6})


def test_artifact_round_trip_keeps_scores_and_metadata(tmp_path):
    saved = _artifact(tmp_path)
    loaded = load_artifact(tmp_path / "model", expected_features=["a", "b", "c", "d"])
    X = np.ones((2, 4))
    assert np.array_equal(saved.scorer.score_samples(X), loaded.scorer.score_samples(X))
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["model_version"].startswith("iforest-")
    assert meta["sha256"] == sha256_of(tmp_path / "model" / "model.joblib")
    assert {"scikit-learn", "numpy", "python"} <= set(meta["library_versions"])


def test_altered_model_file_is_refused_before_unpickling(tmp_path):
    _artifact(tmp_path)
    model = tmp_path / "model" / "model.joblib"
    # A file that would run code if unpickled: refusing it must not load it.
    model.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    with pytest.raises(ArtifactError, match="changed or replaced after training"):
        load_artifact(tmp_path / "model")
    assert not (tmp_path / "pwned").exists()


def test_feature_mismatch_names_the_difference(tmp_path):
    _artifact(tmp_path)
    with pytest.raises(ArtifactError) as error:
        verify_artifact(tmp_path / "model", expected_features=["a", "b", "c", "e"])
    assert "not in the model: ['e']" in str(error.value)
    assert "only in the model: ['d']" in str(error.value)


def test_missing_artifact_says_how_to_make_one(tmp_path):
    with pytest.raises(ArtifactError, match="streamad train"):
        verify_artifact(tmp_path / "nothing")


def test_score_udf_matches_offline_scoring_without_flink(tmp_path):
    """The pandas UDF's eval is plain Python: feed it aggregates, compare with the core."""
    metrics = ["x", "y"]
    stats = ["mean", "std", "min", "max", "last"]
    rng = np.random.default_rng(3)
    events = pd.DataFrame({"k": rng.choice(["a", "b"], 500), "t": np.arange(500) * 60_000,
                           "x": rng.normal(size=500), "y": rng.uniform(size=500)})
    aggregates = window_aggregates(events, "k", "t", metrics, 600_000, 300_000)
    from models.features import features_from_aggregates, feature_names
    features = features_from_aggregates(aggregates, metrics, stats)
    scorer = IsolationForestScorer(n_estimators=30, random_state=0).fit(features.to_numpy())
    save_artifact(tmp_path / "m", scorer, {"model_kind": "iforest", "threshold": 0.55,
                                           "feature_names": feature_names(metrics, stats)})
    udf = ScoreWindows(str(tmp_path / "m"), metrics, stats, include_count=True)
    udf.open(None)
    result = udf.eval(*[aggregates[c] for c in aggregate_columns(metrics)])
    expected = scorer.score_samples(features.to_numpy())
    np.testing.assert_allclose(result["score"].to_numpy(), expected, rtol=0, atol=0)
    assert (result["is_anomaly"] == (expected > 0.55)).all()
    assert set(result["model_version"]) == {udf._artifact.model_version}
    # What the UDF pickles into the job holds no model, only the path.
    assert udf.__getstate__()["_artifact"] is None
