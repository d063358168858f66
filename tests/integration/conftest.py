"""Fixtures for tests against the real Kafka, Flink and InfluxDB.

The session starts the local stack (reusing servers of ours that already run) and stops
only what it started. Set STREAMAD_TEST_EXTERNAL=1 to use servers that run elsewhere, at the
addresses of the configuration (STREAMAD__KAFKA__BOOTSTRAP_SERVERS, ...); then nothing is
started or stopped. Each test gets its own topics, consumer group, InfluxDB measurement and
job name, so tests never see each other's data, nor the demo's.
"""

from __future__ import annotations

import gzip
import os
import uuid
from pathlib import Path

import pytest
import yaml

from streamad.config import JobConfig, load_config

REPO = Path(__file__).resolve().parents[2]
SMD_DIR = Path(os.environ.get("STREAMAD_SMD_DIR", REPO.parent / "shared" / "data" / "smd"))
MACHINES = ("machine-1-6", "machine-2-1", "machine-3-3")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def smd_dir() -> Path:
    if not (SMD_DIR / "machine-1-6_train.csv.gz").is_file():
        pytest.skip(f"SMD data not found at {SMD_DIR}: put the shared/ folder beside the repo "
                    f"or set STREAMAD_SMD_DIR to the folder with machine-*_train.csv.gz")
    return SMD_DIR


@pytest.fixture(scope="session")
def stack_config() -> JobConfig:
    from streamad import stack
    config = load_config()
    if os.environ.get("STREAMAD_TEST_EXTERNAL") == "1":
        yield config
        return
    started = stack.up(config, progress=lambda message: None)
    try:
        yield config
    finally:
        stack.down(started)


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def write_config(config: JobConfig, path: Path, **sections) -> tuple[JobConfig, Path]:
    data = _plain(config.to_dict())
    for section, values in sections.items():
        data[section].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path, environ={}), path


@pytest.fixture(scope="session")
def smd_slices(smd_dir, tmp_path_factory) -> dict[str, list[Path]]:
    """The first rows of a few machines' train and test halves, as small CSV files."""
    folder = tmp_path_factory.mktemp("smd-slices")
    rows = {"train": 4000, "test": 1500}
    files = {"train": [], "test": []}
    for kind, count in rows.items():
        for machine in MACHINES:
            with gzip.open(smd_dir / f"{machine}_{kind}.csv.gz", "rt") as source:
                lines = [next(source) for _ in range(count + 1)]
            target = folder / f"{machine}_{kind}.csv"
            target.write_text("".join(lines))
            files[kind].append(target)
    return files


@pytest.fixture(scope="session")
def trained(stack_config, smd_slices, tmp_path_factory) -> JobConfig:
    """A model trained on the train slices; the config it returns points at it."""
    from models.train import train
    folder = tmp_path_factory.mktemp("model")
    config, _ = write_config(stack_config, folder / "train.yaml",
                             # a quantile threshold alerts on short slices too
                             model={"artifact_dir": str(folder / "artifact"),
                                    "n_estimators": 100, "threshold_method": "quantile",
                                    "target_alert_rate": 0.02},
                             # short enough that machine-2-1's slice drifts and recovers
                             alerts={"drift_after_windows": 24, "drift_clear_after_windows": 6})
    train(config, smd_slices["train"])
    return config


@pytest.fixture
def isolated(trained, tmp_path):
    """A config of this test's own: topics, group, measurement, job name, checkpoints."""
    from streamad.stack import kafka
    run = uuid.uuid4().hex[:8]
    config, path = write_config(
        trained, tmp_path / "job.yaml",
        kafka={"events_topic": f"t-{run}-events", "alerts_topic": f"t-{run}-alerts",
               "dead_letter_topic": f"t-{run}-dead", "consumer_group": f"t-{run}"},
        influxdb={"measurement": f"t_{run}"},
        flink={"job_name": f"streamad-test-{run}", "checkpoint_interval_s": 3,
               "checkpoint_dir": str(tmp_path / "checkpoints"),
               "savepoint_dir": str(tmp_path / "savepoints")})
    kafka.ensure_topics(config.kafka,
                        [config.kafka.events_topic, config.kafka.alerts_topic,
                         config.kafka.dead_letter_topic], config.kafka.partitions)
    return config, path


@pytest.fixture
def idle_cluster(stack_config) -> None:
    """For tests that submit to the Flink cluster: a job already running there (the demo's,
    say) holds the task slots, and the test's job would fail for want of one."""
    from streamad.stack import flink
    busy = flink.running_jobs(stack_config.flink.rest_url)
    if busy:
        pytest.fail(f"the Flink cluster at {stack_config.flink.rest_url} already runs "
                    f"{', '.join(repr(job['name']) for job in busy)}, which holds its task "
                    f"slots; cancel it in the web UI or run 'bin/streamad stack down', then "
                    f"run the tests again.")
