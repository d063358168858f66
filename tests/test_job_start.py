"""The job refuses to start, with a clear message, when its model does not fit or was altered;
it pins the model it was submitted with."""

import os

import pytest
import yaml

from jobs.anomaly_job import main
from models.artifact import (ArtifactError, pinned_artifact, pinned_versions, prune_pinned,
                             save_artifact, sha256_of, verify_artifact)
from models.scorers import IsolationForestScorer

import numpy as np


def _config(tmp_path, artifact_dir, metrics=("cpu", "mem")):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "schema": {"key_field": "host", "time_field": "ts", "metric_fields": list(metrics)},
        "features": {"statistics": ["mean"]},
        "model": {"artifact_dir": str(artifact_dir)}}))
    return path


def _save(directory, features, seed=0):
    scorer = IsolationForestScorer(n_estimators=5, random_state=0).fit(
        np.random.default_rng(seed).normal(size=(50, len(features))))
    return save_artifact(directory, scorer, {"model_kind": "iforest", "feature_names": features,
                                             "threshold": 0.5})


def test_job_refuses_a_model_trained_on_other_features(tmp_path):
    _save(tmp_path / "m", ["event_count", "cpu__mean", "disk__mean"])
    with pytest.raises(ArtifactError, match=r"does not fit the job's configuration.*"
                                            r"not in the model: \['mem__mean'\]"):
        main(["--config", str(_config(tmp_path, tmp_path / "m")), "--explain"])


def test_job_refuses_an_altered_model(tmp_path):
    _save(tmp_path / "m", ["event_count", "cpu__mean", "mem__mean"])
    with open(tmp_path / "m" / "model.joblib", "ab") as model:
        model.write(b"tampered")
    with pytest.raises(ArtifactError, match="changed or replaced after training"):
        main(["--config", str(_config(tmp_path, tmp_path / "m")), "--explain"])


def test_job_without_a_model_says_how_to_train_one(tmp_path):
    with pytest.raises(ArtifactError, match="streamad train"):
        main(["--config", str(_config(tmp_path, tmp_path / "none")), "--explain"])


def test_job_pins_the_model_it_was_submitted_with(tmp_path):
    """The job scores with a copy of the model of its submission (versions/<version>): a
    retrain that replaces the artifact afterwards leaves that copy as it was, and the next
    submission pins the new model beside it."""
    from streamad.stack.flink import connector_jar
    features = ["event_count", "cpu__mean", "mem__mean"]
    explain = ["--config", str(_config(tmp_path, tmp_path / "m")),
               "--connector-jar", str(connector_jar()), "--explain"]
    first = _save(tmp_path / "m", features, seed=0)
    main(explain)
    pinned = tmp_path / "m" / "versions" / first.model_version
    assert verify_artifact(pinned)["model_version"] == first.model_version

    second = _save(tmp_path / "m", features, seed=1)
    assert second.model_version != first.model_version
    assert sha256_of(pinned / "model.joblib") == first.metadata["sha256"]
    main(explain)
    assert sorted(p.name for p in (tmp_path / "m" / "versions").iterdir()) == sorted(
        [first.model_version, second.model_version])
    # A second submission of the same model reuses its copy.
    main(explain)
    assert len(list((tmp_path / "m" / "versions").iterdir())) == 2


def test_job_says_where_it_cannot_pin_its_model(tmp_path):
    _save(tmp_path / "m", ["event_count", "cpu__mean", "mem__mean"])
    (tmp_path / "m" / "versions").write_text("a file where the copies go")
    with pytest.raises(ArtifactError, match=r"cannot write the job's copy of model iforest-\w+ "
                                            r"in .*versions \(.*\): a job scores with a copy"):
        main(["--config", str(_config(tmp_path, tmp_path / "m")), "--explain"])


def test_prune_removes_the_pinned_copies_not_kept_and_leftovers(tmp_path):
    features = ["event_count", "cpu__mean", "mem__mean"]
    versions = []
    for seed in range(3):
        saved = _save(tmp_path / "m", features, seed=seed)
        pinned_artifact(tmp_path / "m", saved.metadata)
        versions.append(saved.model_version)
    (tmp_path / "m" / "versions" / ".left-by-a-crash").mkdir()
    os.utime(tmp_path / "m" / "versions" / ".left-by-a-crash", (0, 0))
    (tmp_path / "m" / "versions" / ".being-written").mkdir()  # a submission now
    assert pinned_versions(tmp_path / "m") == versions
    assert prune_pinned(tmp_path / "m", keep={versions[1], "not-there"}) == [versions[0],
                                                                             versions[2]]
    assert sorted(p.name for p in (tmp_path / "m" / "versions").iterdir()) == [
        ".being-written", versions[1]]
    assert verify_artifact(tmp_path / "m" / "versions" / versions[1])
