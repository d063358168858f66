"""Model artifacts: a joblib file and the metadata that vouches for it.

An artifact is a folder with ``model.joblib`` and ``metadata.json``. The metadata records
the feature names in order, the window configuration, the alert threshold, library versions,
what the model was trained on, and the SHA-256 of ``model.joblib``. joblib runs code when it
loads, so `load_artifact` checks the hash *before* unpickling and refuses anything else.

`streamad train` replaces the artifact in its folder. A job does not read it there: it is
submitted with the model of that moment pinned (`pinned_artifact`), an unchanging copy under
``versions/<model version>/``, so a retrain never changes the model of a job that runs, nor
the one it reloads when Flink restarts it after a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np

FORMAT_VERSION = 6
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
# Under an artifact folder: one unchanging copy per model version that a job was submitted with.
VERSIONS_DIR = "versions"
# A staging folder of a pinned copy this old was left by an interrupted submission.
STAGING_LEFTOVER_S = 3600


class ArtifactError(ValueError):
    """The artifact is missing, altered, or does not fit the job; the message says how to fix it."""


@dataclass(frozen=True)
class ModelArtifact:
    scorer: Any
    metadata: dict

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def model_version(self) -> str:
        return self.metadata["model_version"]

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import pandas
    import sklearn
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "pandas": pandas.__version__,
            "joblib": joblib.__version__}


def save_artifact(directory: Path, scorer: Any, metadata: dict) -> ModelArtifact:
    """Write model and metadata into `directory` (replacing an older artifact there)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees a half-written model.
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
        joblib.dump(scorer, tmp)
    os.replace(tmp.name, directory / MODEL_FILE)
    os.chmod(directory / MODEL_FILE, 0o644)
    digest = sha256_of(directory / MODEL_FILE)
    full = {
        "format_version": FORMAT_VERSION,
        "model_version": f"{metadata.get('model_kind', 'model')}-{digest[:12]}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
        **metadata,
        "sha256": digest,
    }
    (directory / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return ModelArtifact(scorer=scorer, metadata=full)


def read_metadata(directory: Path) -> dict:
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"no model artifact at {directory} ({METADATA_FILE} is missing); "
                            f"train one with 'streamad train', or set model.artifact_dir.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); retrain the model.") from None


def format_mismatch(metadata: dict) -> str | None:
    """Why this version of streamad cannot read the artifact `metadata` describes, as a
    phrase; None when its format is the one read here."""
    found = metadata.get("format_version")
    if found == FORMAT_VERSION:
        return None
    return f"artifact format {found!r}, and this version of streamad reads format {FORMAT_VERSION}"


def verify_artifact(directory: Path, expected_features: Sequence[str] | None = None,
                    expected_version: str | None = None) -> dict:
    """Check hash, features and (when given) the model version without unpickling anything;
    returns the metadata."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    mismatch = format_mismatch(metadata)
    if mismatch:
        raise ArtifactError(f"{directory} has {mismatch}. Retrain with 'streamad train'.")
    if expected_version is not None and metadata.get("model_version") != expected_version:
        raise ArtifactError(
            f"{directory} holds model {metadata.get('model_version')!r}, and the job was "
            f"submitted with {expected_version!r}: a pinned model folder was changed by hand. "
            f"Submit the job again ('streamad submit --replace').")
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing; retrain with 'streamad train'.")
    actual = sha256_of(model_path)
    if actual != metadata.get("sha256"):
        raise ArtifactError(
            f"{model_path} has SHA-256 {actual}, but {METADATA_FILE} vouches for "
            f"{metadata.get('sha256')}: the model file was changed or replaced after training. "
            f"Refusing to load it; retrain with 'streamad train'.")
    if expected_features is not None:
        trained = list(metadata.get("feature_names", []))
        expected = list(expected_features)
        if trained != expected:
            missing = [f for f in expected if f not in trained]
            extra = [f for f in trained if f not in expected]
            detail = (f"the job would compute {len(expected)} features, the model was trained "
                      f"on {len(trained)}")
            if missing:
                detail += f"; not in the model: {missing[:5]}"
            if extra:
                detail += f"; only in the model: {extra[:5]}"
            if not missing and not extra:
                detail += "; same names in another order"
            raise ArtifactError(
                f"the model at {directory} does not fit the job's configuration: {detail}. "
                f"Retrain with the same schema and features settings, or fix the configuration.")
    return metadata


def load_artifact(directory: Path, expected_features: Sequence[str] | None = None,
                  expected_version: str | None = None) -> ModelArtifact:
    """Verify, then load, the artifact in `directory`."""
    metadata = verify_artifact(directory, expected_features, expected_version)
    scorer = joblib.load(Path(directory) / MODEL_FILE)
    return ModelArtifact(scorer=scorer, metadata=metadata)


def pinned_artifact(directory: Path, metadata: dict) -> Path:
    """The unchanging copy of the artifact in `directory` that `metadata` (as
    `verify_artifact` returned it) describes: ``directory/versions/<model version>``, made on
    first use and verified. A job reads its model from there, so that `streamad train`
    replacing the artifact in `directory` does not change the model of a job already
    submitted, failovers included; the job takes the new model when it is submitted again.
    """
    directory = Path(directory)
    version = metadata["model_version"]
    versions = directory / VERSIONS_DIR
    pinned = versions / version
    if not (pinned / METADATA_FILE).is_file():
        try:
            versions.mkdir(exist_ok=True)
            # Copied into a staging folder and renamed, so a reader never sees half a copy.
            staging = Path(tempfile.mkdtemp(dir=versions, prefix=f".{version}-"))
        except OSError as error:
            raise ArtifactError(
                f"cannot write the job's copy of model {version} in {versions} ({error}): a "
                f"job scores with a copy of its model pinned there, so the folder must be "
                f"writable for whoever submits the job.") from None
        try:
            shutil.copyfile(directory / MODEL_FILE, staging / MODEL_FILE)
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
            for name in (MODEL_FILE, METADATA_FILE):
                os.chmod(staging / name, 0o644)
            os.chmod(staging, 0o755)
            if sha256_of(staging / MODEL_FILE) != metadata.get("sha256"):
                raise ArtifactError(
                    f"{directory / MODEL_FILE} changed while the job was being submitted "
                    f"(a 'streamad train' running?); submit again once it is done.")
            try:
                os.rename(staging, pinned)
            except OSError:
                if not (pinned / METADATA_FILE).is_file():  # not another submission's copy
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    verify_artifact(pinned, expected_version=version)
    return pinned


def pinned_versions(directory: Path) -> list[str]:
    """The model versions pinned under `directory` (`pinned_artifact`), oldest first."""
    versions = Path(directory) / VERSIONS_DIR
    if not versions.is_dir():
        return []
    pinned = [p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [p.name for p in sorted(pinned, key=lambda p: (p.stat().st_mtime, p.name))]


def prune_pinned(directory: Path, keep: set[str]) -> list[str]:
    """Remove the pinned copies under `directory` whose version is not in `keep`, and what an
    interrupted pinning left behind; returns the versions removed."""
    versions = Path(directory) / VERSIONS_DIR
    removed = [v for v in pinned_versions(directory) if v not in keep]
    for version in removed:
        shutil.rmtree(versions / version)
    # Staging folders of `pinned_artifact` old enough that no submission still writes them.
    for leftover in versions.glob(".*"):
        if time.time() - leftover.stat().st_mtime > STAGING_LEFTOVER_S:
            shutil.rmtree(leftover, ignore_errors=True)
    return removed
