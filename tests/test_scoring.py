"""Scorer contract, thresholds, artifacts, and the scoring UDF run without Flink."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from models.artifact import (FORMAT_VERSION, ArtifactError, load_artifact, pinned_artifact,
                             save_artifact, sha256_of, verify_artifact)
from models.features import aggregate_columns, window_aggregates
from models.detector import Detector, DetectorSettings
from models.scorers import (SCORERS as SCORER_KINDS, IsolationForestScorer, KNNScorer,
                            PCAScorer, RobustZScorer, make_scorer)
from models.threshold import TailCalibrator
from udfs.scoring import ScoreWindows

# Every scorer the configuration can name goes through the same contract checks.
SCORERS = [IsolationForestScorer(n_estimators=50, random_state=0), PCAScorer(variance=0.9),
           RobustZScorer(), KNNScorer(random_state=0)]


def test_every_configurable_scorer_is_under_contract():
    assert {type(s) for s in SCORERS} == set(SCORER_KINDS.values())
    for kind, cls in SCORER_KINDS.items():
        assert isinstance(make_scorer(kind), cls)


@pytest.fixture
def normal_data():
    return np.random.default_rng(1).normal(size=(400, 4))


def _one_factor_data(rng) -> np.ndarray:
    """One hidden factor behind four features: structure a PCA can find."""
    return rng.normal(size=(400, 1)) @ np.ones((1, 4)) + rng.normal(scale=0.1, size=(400, 4))


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

    def test_contributions_are_non_negative_and_point_at_the_odd_feature(self, scorer,
                                                                          normal_data):
        data = _one_factor_data(np.random.default_rng(8))
        scorer.fit(data)
        rows = data[:10].copy()
        rows[:, 2] += 12.0 * data[:, 2].std()
        contributions = scorer.feature_contributions(rows)
        assert contributions.shape == rows.shape
        assert (contributions >= 0).all()
        assert (contributions.argmax(axis=1) == 2).all()

    def test_score_and_contributions_together_equal_each_alone(self, scorer, normal_data):
        scorer.fit(normal_data)
        scores, contributions = scorer.score_and_contributions(normal_data[:50])
        assert np.array_equal(scores, scorer.score_samples(normal_data[:50]))
        assert np.array_equal(contributions, scorer.feature_contributions(normal_data[:50]))

    def test_a_rows_score_does_not_depend_on_the_rows_scored_with_it(self, scorer):
        data = _one_factor_data(np.random.default_rng(9))
        scorer.fit(data)
        rows = np.vstack([data[:30], data[:5] + [0.0, 0.0, 3.0, 0.0]])
        one_by_one = [scorer.score_and_contributions(row[None, :]) for row in rows]
        scores, contributions = scorer.score_and_contributions(rows)
        close = {"rtol": 1e-9, "atol": 1e-12}
        np.testing.assert_allclose(scores, [s[0] for s, _ in one_by_one], **close)
        np.testing.assert_allclose(contributions, np.vstack([c for _, c in one_by_one]),
                                   **close)
        np.testing.assert_allclose(scorer.training_scores(rows),
                                   [scorer.training_scores(row[None, :])[0] for row in rows],
                                   **close)
        assert scores[30:].min() > np.median(scores[:30])  # the rows differ, not all ~0

    def test_training_scores_never_flatter_the_rows_it_was_fitted_on(self, scorer,
                                                                      normal_data):
        scorer.fit(normal_data)
        training = scorer.training_scores(normal_data)
        assert training.shape == (len(normal_data),) and np.isfinite(training).all()
        assert (training >= scorer.score_samples(normal_data)).all()

    def test_survives_a_pickle_round_trip(self, scorer, normal_data):
        import pickle
        scorer.fit(normal_data)
        copy = pickle.loads(pickle.dumps(scorer))
        assert np.array_equal(copy.score_samples(normal_data), scorer.score_samples(normal_data))


def test_knn_training_scores_are_those_of_each_row_left_out(normal_data):
    rows = normal_data[:60]
    training = KNNScorer(n_neighbors=3).fit(rows).training_scores(rows)
    left_out = [KNNScorer(n_neighbors=3).fit(np.delete(rows, i, axis=0))
                .score_samples(rows[i:i + 1])[0] for i in range(len(rows))]
    assert training == pytest.approx(left_out)
    # Scored as any new row, each would find itself at distance 0 and look more normal.
    assert (KNNScorer(n_neighbors=3).fit(rows).score_samples(rows) < training).all()


def test_knn_score_is_a_squared_distance_like_the_other_natural_zero_scores():
    # One training window at the origin: a window at distance 2 scores 4, as PCA's squared
    # residual and robust z's squared z-scores would, so a median multiple means the same.
    scorer = KNNScorer(n_neighbors=1).fit(np.zeros((1, 2)))
    assert scorer.score_samples([[2.0, 0.0]]).tolist() == [4.0]


def test_threshold_gives_the_target_alert_rate(normal_data):
    scores = IsolationForestScorer(n_estimators=50, random_state=0).fit(
        normal_data).score_samples(normal_data)
    threshold = TailCalibrator().fit(scores).threshold("quantile", 0.05)
    assert (scores > threshold).mean() == pytest.approx(0.05, abs=0.005)


def test_median_multiple_threshold_ignores_incidents_in_the_training_data():
    rng = np.random.default_rng(3)
    normal = rng.chisquare(5, size=9_700)  # a squared error: 0 is exactly normal
    incidents = rng.uniform(200, 400, size=300)  # 3% of training windows, unlabeled
    clean, dirty = TailCalibrator().fit(normal), TailCalibrator().fit(np.r_[normal, incidents])
    # The tail rules land among the incidents the training data happened to hold...
    assert dirty.threshold("quantile", 0.01) > 150
    # ...the median multiple barely moves, and is a multiple of the typical score.
    threshold = dirty.threshold("median_multiple", 5)
    assert threshold == pytest.approx(5 * np.median(np.r_[normal, incidents]), rel=1e-3)
    assert threshold == pytest.approx(clean.threshold("median_multiple", 5),
                                      rel=0.05)
    with pytest.raises(ValueError, match=r"median_multiple must be above 1 .*got 0.5"):
        dirty.threshold("median_multiple", 0.5)


def test_detector_refuses_median_multiple_on_a_score_without_a_natural_zero(normal_data):
    names = ["a", "b", "c", "d"]
    features, keys = pd.DataFrame(normal_data, columns=names), ["k"] * len(normal_data)
    settings = DetectorSettings(kind="iforest", threshold_method="median_multiple",
                                n_estimators=20, min_key_windows=50)
    with pytest.raises(ValueError, match="needs a score that is 0 on exactly normal windows"):
        Detector(names, settings).fit(features, keys)
    pca = Detector(names, DetectorSettings(kind="pca", threshold_method="median_multiple",
                                           median_multiple=4, min_key_windows=50))
    pca.fit(features, keys)
    assert pca.threshold_for("k") == pytest.approx(4 * np.median(pca.training_scores_),
                                                   rel=1e-3)


def test_threshold_needs_finite_scores():
    with pytest.raises(ValueError, match="no finite training scores"):
        TailCalibrator().fit([np.nan])


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


def test_artifact_of_another_format_is_refused_with_both_formats_named(tmp_path):
    _artifact(tmp_path)
    metadata_path = tmp_path / "model" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "format_version": 1}))
    with pytest.raises(ArtifactError, match=rf"has artifact format 1, and this version of "
                                            rf"streamad reads format {FORMAT_VERSION}\. Retrain"):
        load_artifact(tmp_path / "model")


def test_missing_artifact_says_how_to_make_one(tmp_path):
    with pytest.raises(ArtifactError, match="streamad train"):
        verify_artifact(tmp_path / "nothing")


UDF_METRICS = ["x", "y"]
UDF_STATISTICS = ["mean", "std", "range", "last", "delta"]


def _udf_windows(recent_windows: int, seed: int = 3):
    """Two keys' window aggregates and features (with the recent levels) of random events."""
    from models.features import features_from_aggregates, recent_levels
    rng = np.random.default_rng(seed)
    events = pd.DataFrame({"k": rng.choice(["a", "b"], 3000), "t": np.arange(3000) * 60_000,
                           "x": rng.normal(size=3000), "y": rng.uniform(size=3000)})
    aggregates = window_aggregates(events, "k", "t", UDF_METRICS, 600_000, 300_000)
    features = features_from_aggregates(aggregates, UDF_METRICS, UDF_STATISTICS).join(
        recent_levels(aggregates, "k", UDF_METRICS, max(recent_windows, 1)))
    return aggregates, features


def _udf_model(directory, recent_windows: int, seed: int = 3):
    """A PCA detector fitted on `_udf_windows(seed)`, saved as the artifact in `directory`."""
    from models.features import feature_names
    aggregates, features = _udf_windows(recent_windows, seed)
    names = feature_names(UDF_METRICS, UDF_STATISTICS)
    detector = Detector(names, DetectorSettings(
        kind="pca", explain_recent_windows=recent_windows)).fit(features, aggregates["k"])
    return save_artifact(directory, detector, {"model_kind": "pca", "threshold": 0.0,
                                               "feature_names": names})


def _udf_columns(aggregates, features, recent_windows: int) -> list:
    """The UDF's arguments after the key, as the job's SQL hands them over."""
    from models.features import recent_level_names
    columns = aggregate_columns(UDF_METRICS) + (recent_level_names(UDF_METRICS)
                                                if recent_windows else [])
    given = pd.concat([aggregates, features.filter(like="__recent_level")], axis=1)
    return [given[c] for c in columns]


@pytest.mark.parametrize("recent_windows", [0, 6])
def test_score_udf_matches_offline_scoring_without_flink(tmp_path, recent_windows):
    """The pandas UDF's eval is plain Python: feed it aggregates (and the recent levels the
    job's SQL computes), compare with the core."""
    metrics, stats = UDF_METRICS, UDF_STATISTICS
    aggregates, features = _udf_windows(recent_windows)
    detector = _udf_model(tmp_path / "m", recent_windows).scorer
    udf = ScoreWindows(str(tmp_path / "m"), metrics, stats, include_count=True, explain_top=2,
                       recent_level_windows=recent_windows)
    from pyflink.table.udf import FunctionContext
    # As with python.metric.enabled: false, the context has no metric group: the UDF
    # scores all the same, uncounted.
    udf.open(FunctionContext(None, None))
    result = udf.eval(aggregates["k"], *_udf_columns(aggregates, features, recent_windows))
    expected = detector.score(features, aggregates["k"])
    np.testing.assert_allclose(result["score"].to_numpy(), expected["score"], rtol=0, atol=0)
    assert (result["is_anomaly"] == expected["is_anomaly"]).all()
    assert (result["grade"].between(0, 1)).all()
    assert result["driver_1"].tolist() == [d[0][0] for d in expected["drivers"]]
    assert result["driver_1_deviation"].tolist() == [d[0][2] for d in expected["drivers"]]
    assert set(result["model_version"]) == {udf._artifact.model_version}
    # What the UDF pickles into the job holds no model, only the path.
    assert udf.__getstate__()["_artifact"] is None
    # A job built for other recent levels than the model's (one not pinned to its model,
    # whose model was replaced) stops at open, saying so.
    other = ScoreWindows(str(tmp_path / "m"), metrics, stats, include_count=True,
                         explain_top=2, recent_level_windows=recent_windows + 3)
    with pytest.raises(ArtifactError, match=f"over {recent_windows} windows.*Submit the job"):
        other.open(FunctionContext(None, None))


def test_score_udf_keeps_its_pinned_model_when_the_artifact_is_retrained(tmp_path):
    """As the submitted job has it, the UDF reads the pinned copy of its model: a retrain
    that replaces the artifact afterwards changes nothing it scores, on a restart too (each
    open loads the model again). A pinned folder that holds another model is refused."""
    from pyflink.table.udf import FunctionContext
    first = _udf_model(tmp_path / "m", 0, seed=3)
    pinned = pinned_artifact(tmp_path / "m", first.metadata)
    assert pinned == tmp_path / "m" / "versions" / first.model_version
    udf = ScoreWindows(str(pinned), UDF_METRICS, UDF_STATISTICS, include_count=True,
                       explain_top=2, model_version=first.model_version)
    aggregates, features = _udf_windows(0, seed=5)
    columns = _udf_columns(aggregates, features, 0)
    udf.open(FunctionContext(None, None))
    before = udf.eval(aggregates["k"], *columns)

    second = _udf_model(tmp_path / "m", 0, seed=4)
    assert second.model_version != first.model_version
    udf.open(FunctionContext(None, None))
    after = udf.eval(aggregates["k"], *columns)
    assert set(after["model_version"]) == {first.model_version}
    pd.testing.assert_frame_equal(after, before)
    # The retrained model does score differently: the pin is what kept the scores.
    expected = second.scorer.score(features, aggregates["k"])
    assert not np.allclose(expected["score"].to_numpy(), before["score"].to_numpy())

    wrong = ScoreWindows(str(pinned), UDF_METRICS, UDF_STATISTICS, include_count=True,
                         explain_top=2, model_version=second.model_version)
    with pytest.raises(ArtifactError, match=rf"holds model '{first.model_version}', and the "
                                            rf"job was submitted with '{second.model_version}'"):
        wrong.open(FunctionContext(None, None))


def test_recent_levels_rank_a_metric_that_just_moved_before_one_long_as_far_out():
    """b has sat 5 sd above its normal for 100 windows when a jumps to 4.5: by rarity alone
    b, further out, comes first; with the recent levels a, which just moved, does. Windows
    without the levels are refused, saying how to get them."""
    from models.features import features_from_aggregates, recent_levels
    rng = np.random.default_rng(4)
    values = rng.normal(size=(1000, 2))
    values[600:, 1] += 5.0   # b's level shift, 100 windows before the probe
    values[700:, 0] += 4.5   # a's jump at the probe
    aggregates = pd.DataFrame({"k": "host", "window_start_ms": np.arange(1000) * 300_000,
                               "event_count": 1.0, "a__sum": values[:, 0],
                               "b__sum": values[:, 1]})
    features = features_from_aggregates(aggregates, ["a", "b"], ["mean"], include_count=False)
    with_levels = features.join(recent_levels(aggregates, "k", ["a", "b"], windows=12))
    train, probe = slice(0, 500), [700]
    first = {}
    for windows in (0, 12):
        detector = Detector(["a__mean", "b__mean"], DetectorSettings(
            kind="robust_z", explain_recent_windows=windows)).fit(
            with_levels.iloc[train], aggregates["k"].iloc[train])
        first[windows] = detector.score(with_levels.iloc[probe], ["host"])["drivers"].iloc[0][0][0]
    assert first == {0: "b", 12: "a"}
    with pytest.raises(ValueError, match=r"lack the recent levels \['a__recent_level'.*"
                                         r"explain_recent_windows to 0"):
        detector.score(features.iloc[probe], ["host"])
    # The scores do not depend on them: explain=False needs no levels.
    assert detector.score(features.iloc[probe], ["host"], explain=False)["is_anomaly"].all()


def _keyed(rng, n=1500):
    """Two keys on very different levels: "busy" runs at 100 +- 10, "idle" at 1 +- 0.1."""
    busy = rng.normal(100, 10, size=(n, 3))
    idle = rng.normal(1, 0.1, size=(n, 3))
    names = ["cpu__mean", "mem__mean", "disk__mean"]
    return (pd.DataFrame(np.vstack([busy, idle]), columns=names),
            np.array(["busy"] * n + ["idle"] * n), names)


@pytest.mark.parametrize("baseline", ["pooled", "per_key"])
def test_each_key_is_judged_against_its_own_normal(baseline):
    features, keys, names = _keyed(np.random.default_rng(4))
    detector = Detector(names, DetectorSettings(kind="pca", baseline=baseline)).fit(features,
                                                                                    keys)
    # A busy machine being busy is normal; an idle machine at the busy level is not.
    probe = pd.DataFrame([[100.0, 100.0, 100.0], [100.0, 100.0, 100.0]], columns=names)
    result = detector.score(probe, ["busy", "idle"])
    assert result["is_anomaly"].tolist() == [False, True]
    assert result["grade"][1] == 1.0
    # Per key, about target_alert_rate of normal windows alert.
    rate = detector.score(features, keys)["is_anomaly"].mean()
    assert rate == pytest.approx(0.01, abs=0.006)


def test_one_drifting_metric_is_capped_and_named():
    features, keys, names = _keyed(np.random.default_rng(5))
    detector = Detector(names, DetectorSettings(kind="robust_z", cap=5.0)).fit(features, keys)
    far, farther = features.iloc[:1].copy(), features.iloc[:1].copy()
    far["disk__mean"] += 1_000.0
    farther["disk__mean"] += 1_000_000.0
    scored = detector.score(pd.concat([far, farther]), ["busy", "busy"])
    # However far the metric drifts, it adds the same bounded amount...
    assert scored["score"].iloc[0] == pytest.approx(scored["score"].iloc[1])
    # ...and the window says which metric left its training range, and that it drove it.
    assert scored["out_of_range"].iloc[0] == ["disk"]
    assert scored["drivers"].iloc[0][0][0] == "disk"


def test_deviation_explanation_ranks_metrics_beyond_the_cap():
    features, keys, names = _keyed(np.random.default_rng(5))
    window = features.iloc[:1].copy()
    # Both past the cap of 5 sd, where the score sees them alike; disk is further out.
    window["cpu__mean"] = 100.0 + 10 * 20
    window["disk__mean"] = 100.0 + 10 * 60
    shares, deviations = {}, {}
    for method in ("deviation", "score"):
        settings = DetectorSettings(kind="robust_z", cap=5.0, explain_with=method)
        detector = Detector(names, settings).fit(features, keys)
        drivers = detector.score(window, ["busy"])["drivers"].iloc[0]
        shares[method] = {metric: share for metric, share, _ in drivers}
        deviations[method] = {metric: deviation for metric, _, deviation in drivers}
    # (Not exactly alike: the robust z scorer rescales the capped values by their spread.)
    assert shares["score"]["cpu"] == pytest.approx(shares["score"]["disk"], rel=0.1)
    # About 60 sd against 20: three times the share.
    assert shares["deviation"]["disk"] == pytest.approx(3 * shares["deviation"]["cpu"],
                                                        rel=0.05)
    assert list(shares["deviation"]) == ["disk", "cpu", "mem"]
    # Each driver says how far out it is, with the sign, whichever way it was ranked: the
    # busy key's normal is 100 +- 10.
    for method in deviations:
        assert deviations[method]["disk"] == pytest.approx(60, rel=0.05)
        assert deviations[method]["cpu"] == pytest.approx(20, rel=0.05)


def test_a_fitted_detector_explains_the_other_way_as_one_fitted_for_it():
    features, keys, names = _keyed(np.random.default_rng(5))
    window = features.iloc[:1].copy()
    window["cpu__mean"] = 100.0 + 10 * 20
    window["disk__mean"] = 100.0 + 10 * 60
    settings = DetectorSettings(kind="pca", explain_with="deviation")
    detector = Detector(names, settings).fit(features, keys)
    fitted_for_score = Detector(names, DetectorSettings(kind="pca", explain_with="score")
                                ).fit(features, keys)
    by_score = detector.explained_with("score").score(window, ["busy"])
    assert by_score["drivers"].iloc[0] == fitted_for_score.score(window, ["busy"])[
        "drivers"].iloc[0]
    # The detector it came from still explains by deviation, and the two differ here.
    assert detector.settings.explain_with == "deviation"
    assert detector.score(window, ["busy"])["drivers"].iloc[0] != by_score["drivers"].iloc[0]
    with pytest.raises(ValueError,
                       match="unknown explanation 'shap'; known: rarity, deviation, score"):
        detector.explained_with("shap")


def test_a_feature_that_never_moved_in_training_is_measured_in_its_metrics_units():
    rng = np.random.default_rng(9)
    n = 600
    names = ["load__mean", "load__min", "cpu__mean"]
    # A window's minimum of a metric that is mostly 0: 0 in every training window, on every
    # key, while the metric's mean moves over [0, 1].
    train = pd.DataFrame({"load__mean": rng.uniform(0, 1, n), "load__min": np.zeros(n),
                          "cpu__mean": rng.normal(size=n)})
    detector = Detector(names, DetectorSettings(kind="pca")).fit(train, ["a", "b"] * (n // 2))
    window = pd.DataFrame([[0.5, 0.5, 0.0]], columns=names)
    scored = detector.score(window, ["a"])
    metric, _, deviation = scored["drivers"].iloc[0][0]
    # Its unit is 1% of how far its metric moves over all keys, not a near-zero that would
    # make 0.5 read as hundreds of millions of sd.
    load_spread = np.quantile(train["load__mean"], 0.99) - np.quantile(train["load__mean"], 0.01)
    assert metric == "load"
    assert deviation == pytest.approx(0.5 / (0.01 * load_spread), rel=1e-3)
    assert scored["out_of_range"].iloc[0] == ["load"]


def test_scorers_see_a_usual_spike_at_its_tails_size_and_alerts_report_plain_sd():
    rng = np.random.default_rng(10)
    n = 2000
    names = ["cpu__mean", "mem__mean", "job__max"]
    train = pd.DataFrame(rng.normal(size=(n, 3)), columns=names)
    # A nightly job: one window in a hundred, job__max jumps by 8.
    train.loc[::100, "job__max"] += 8.0
    windows = pd.DataFrame([[0.0, 0.0, 8.0], [0.0, 0.0, 40.0]], columns=names)
    seen, reported = {}, {}
    for tail_quantile in (0.999, None):
        settings = DetectorSettings(kind="pca", scale_tail_quantile=tail_quantile, cap=50.0)
        detector = Detector(names, settings).fit(train, ["k"] * n)
        seen[tail_quantile] = detector.scaler_.transform(windows.to_numpy(), ["k"] * 2)[:, 2]
        drivers = detector.score(windows, ["k"] * 2)["drivers"]
        assert [d[0][0] for d in drivers] == ["job", "job"]
        reported[tail_quantile] = [d[0][2] for d in drivers]
    job = train["job__max"]
    in_sd = (windows["job__max"] - job.mean()) / job.std(ddof=0)
    # Either way the alert says how far job__max is in its standard deviations...
    for deviations in reported.values():
        assert deviations == pytest.approx(in_sd.round(2).tolist(), abs=0.01)
    # ...while the scorers see the usual spike within a normal metric's 99.9th percentile
    # (3.29), not over 6 sd out as if it were rare, and a spike five times as high five
    # times as far.
    assert seen[None] == pytest.approx(in_sd.to_numpy(), rel=1e-6) and in_sd[0] > 6
    assert 2 < seen[0.999][0] < 3.29
    assert seen[0.999][1] == pytest.approx(5 * seen[0.999][0], rel=0.02)


def test_score_explanation_names_a_broken_correlation_that_deviations_miss():
    rng = np.random.default_rng(8)
    n = 2000
    a = rng.normal(size=n)
    names = ["a__mean", "b__mean", "c__mean", "d__mean", "e__mean", "f__mean"]
    train = pd.DataFrame(np.column_stack([a, a + rng.normal(0, 0.05, n),
                                          rng.normal(size=(n, 4))]), columns=names)
    # a and b, always together in training, part by one sd each; c is 2.5 sd out, but c
    # on its own is a direction the PCA has seen.
    window = pd.DataFrame([[1.0, -1.0, 2.5, 0.0, 0.0, 0.0]], columns=names)
    drivers = {}
    for method in ("deviation", "score"):
        settings = DetectorSettings(kind="pca", pca_variance=0.9, explain_with=method)
        detector = Detector(names, settings).fit(train, ["k"] * n)
        scored = detector.score(window, ["k"])
        assert bool(scored["is_anomaly"].iloc[0])
        drivers[method] = [metric for metric, _, _ in scored["drivers"].iloc[0]]
    assert drivers["deviation"][0] == "c"
    assert set(drivers["score"][:2]) == {"a", "b"}


@pytest.mark.parametrize("baseline", ["pooled", "per_key"])
@pytest.mark.parametrize("explain_with", ["rarity", "score"])
def test_a_batch_of_interleaved_keys_scores_as_each_key_alone(baseline, explain_with):
    """Keys sharing a scorer are scored in one call; each row's result must still be its own
    key's, wherever the row sits in the batch and whatever keys sit beside it."""
    features, keys, names = _keyed(np.random.default_rng(7))
    settings = DetectorSettings(kind="pca", baseline=baseline, explain_with=explain_with)
    detector = Detector(names, settings).fit(features, keys)
    probe = features.iloc[::25].copy()
    probe.iloc[::3] *= 1.5  # some rows off normal, so grades and alerts vary
    probe_keys = np.array(["busy", "idle", "new-key"] * len(probe))[:len(probe)]
    order = np.random.default_rng(8).permutation(len(probe))
    probe, probe_keys = probe.iloc[order], probe_keys[order]

    together, shares = detector.score_with_shares(probe, probe_keys)
    for key in ["busy", "idle", "new-key"]:
        rows = probe_keys == key
        alone, alone_shares = detector.score_with_shares(probe[rows], probe_keys[rows])
        pd.testing.assert_frame_equal(together[rows], alone, rtol=1e-9)
        np.testing.assert_allclose(shares[rows], alone_shares, rtol=1e-9, atol=1e-12)
    assert together["is_anomaly"].any() and not together["is_anomaly"].all()


def test_rarity_names_the_metric_whose_move_is_rare_for_the_key_not_its_usual_spike():
    """In training, "spiky" jumps to 10 in 5% of windows, "steady" only wanders within
    +-3 and "flappy" has a steady level whose within-window spread varies."""
    rng = np.random.default_rng(11)
    n = 2000
    names = ["spiky__mean", "spiky__std", "steady__mean", "steady__std", "flappy__mean",
             "flappy__std"]
    train = pd.DataFrame({"spiky__mean": np.where(np.arange(n) % 20 == 0, 10.0, 0.0),
                          "spiky__std": rng.uniform(0.5, 1.5, n),
                          "steady__mean": np.clip(rng.normal(size=n), -3, 3),
                          "steady__std": rng.uniform(0.5, 1.5, n),
                          "flappy__mean": rng.normal(size=n),
                          "flappy__std": rng.uniform(0.5, 1.5, n)})
    detector = Detector(names, DetectorSettings(kind="robust_z")).fit(train, ["a"] * n)
    # A usual spike, a first move past the training range, and a burst of within-window
    # noise far beyond anything seen (its std, a spread statistic), its level normal.
    window = pd.DataFrame([{"spiky__mean": 10.0, "spiky__std": 1.0, "steady__mean": 4.2,
                            "steady__std": 1.0, "flappy__mean": 0.0, "flappy__std": 9.0}])
    order = {method: [m for m, _, _ in detector.explained_with(method).score(
                 window, ["a"])["drivers"].iloc[0]] for method in ("rarity", "deviation")}
    assert order["deviation"][:3] == ["flappy", "spiky", "steady"]
    assert order["rarity"][0] == "steady"
    assert order["rarity"].index("spiky") < order["rarity"].index("flappy")


def test_unseen_key_is_scored_against_the_pooled_baseline():
    features, keys, names = _keyed(np.random.default_rng(6))
    detector = Detector(names, DetectorSettings(kind="iforest", n_estimators=30)).fit(features,
                                                                                      keys)
    result = detector.score(features.iloc[:5], ["new-key"] * 5)
    assert np.isfinite(result["score"]).all() and result["grade"].between(0, 1).all()


def test_grade_is_the_tail_probability_on_a_log_scale():
    calibrator = TailCalibrator().fit(np.random.default_rng(7).exponential(size=200_000))
    # Exponential tail: P(X >= s) = exp(-s); grade = -log10(p) / 6.
    for score in (1.0, np.log(1000), np.log(1e6)):
        expected = min(score / np.log(10) / 6, 1.0)
        assert calibrator.grade(np.array([score]))[0] == pytest.approx(expected, abs=0.02)
    # POT extrapolates beyond the training maximum.
    threshold = calibrator.threshold("pot", 1e-7)
    assert threshold == pytest.approx(np.log(1e7), rel=0.05)
    assert threshold > calibrator.max_train_score_
    assert calibrator.threshold("quantile", 0.01) == pytest.approx(
        np.log(100), rel=0.02)
