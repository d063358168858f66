"""Throughput of the scoring core and of the whole job, on the SMD data.

    bin/streamad bench            # everything (starts the stack, stops what it started)
    bin/streamad bench --core     # the Flink-free core only
    bin/streamad bench --statistics mean   # the job with fewer features (39, not 191)

Prints one line per measurement and writes them all to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from pyflink.table.udf import FunctionContext

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.artifact import MODEL_FILE, load_artifact  # noqa: E402
from models.data import TIME_MS_COLUMN, load_events_csv  # noqa: E402
from models.features import aggregate_columns, feature_names, recent_level_names  # noqa: E402
from models.train import recent_levels_for, train, train_on_events, windows_for  # noqa: E402
from streamad.cli import DEFAULT_DATA_DIR, why_train  # noqa: E402
from streamad.config import load_config  # noqa: E402
from streamad.events import validate_events  # noqa: E402
from streamad.replay import encoded, ordered_events  # noqa: E402
from udfs.influx_sink import SCORE_FIELDS, to_line_protocol  # noqa: E402
from udfs.scoring import ScoreWindows  # noqa: E402

RESULTS = REPO / "bench" / "results" / "throughput.json"
# Stretches each SMD machine is cut into for the many-keys measurement: 20 keeps every
# stretch above the 200 training windows a key needs for a baseline of its own.
STRETCHES_PER_MACHINE = 20


def timed(function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bench_core(config, data_dir: Path, artifact_dir: Path) -> dict:
    files = sorted(data_dir.glob("*_test.csv.gz"))
    events = ordered_events(files, config)
    payloads = [value.decode() for _, value, _ in encoded(events, config)]
    batch = payloads[:20_000]
    seconds = timed(lambda: validate_events(batch, [True] * len(batch), config.schema.key_field,
                                            config.schema.time_field, config.schema.metric_fields))
    results = {"validate_events_per_s": len(batch) / seconds}

    aggregates = with_recent_levels(windows_for(load_events_csv(files, config.schema), config),
                                    config)
    udf = opened_udf(config, artifact_dir)
    arrow_batch = aggregates.iloc[:1000]
    key = config.schema.key_field
    seconds = timed(scoring(udf, arrow_batch, config))
    results["score_windows_per_s_batch_1000"] = 1000 / seconds
    seconds = timed(scoring(udf, aggregates.iloc[:1], config), repeat=5)
    results["score_windows_per_s_batch_1"] = 1 / seconds

    scored = scoring(udf, arrow_batch, config)()
    names = list(SCORE_FIELDS) + feature_names(
        config.schema.metric_fields, config.features.statistics, config.features.include_count)
    seconds = timed(lambda: to_line_protocol(
        "bench", "machine", arrow_batch[key], scored["model_version"],
        arrow_batch["window_end_ms"].to_numpy(), scored[names]))
    results["line_protocol_windows_per_s"] = 1000 / seconds
    results["events"] = len(events)
    results["windows"] = len(aggregates)
    results.update(bench_many_keys(config, data_dir))
    return results


def opened_udf(config, artifact_dir) -> ScoreWindows:
    """The job's scoring UDF on the model in `artifact_dir`, opened as a TaskManager opens it."""
    udf = ScoreWindows(str(artifact_dir), config.schema.metric_fields,
                       config.features.statistics, config.features.include_count,
                       config.model.explain_top, config.model.explain_recent_windows)
    udf.open(FunctionContext(None, None))  # Python metrics off: the scoring alone is timed
    return udf


def with_recent_levels(aggregates: pd.DataFrame, config) -> pd.DataFrame:
    """The window aggregates with the recent levels the job's SQL puts beside them, when the
    explanations weigh them."""
    levels = recent_levels_for(aggregates, config)
    return aggregates if levels is None else aggregates.join(levels)


def scoring(udf: ScoreWindows, batch: pd.DataFrame, config):
    """A call that scores `batch`'s window aggregates (and recent levels) with `udf`, its
    columns handed over as the job's arrow batch hands them."""
    key = config.schema.key_field
    columns = aggregate_columns(config.schema.metric_fields)
    if config.model.explain_recent_windows:
        columns += recent_level_names(config.schema.metric_fields)
    return lambda: udf.eval(batch[key], *[batch[c] for c in columns])


def as_many_devices(events: pd.DataFrame, key_field: str, stretches: int) -> pd.DataFrame:
    """Each machine's events cut into `stretches` consecutive stretches, each a key of its own,
    all moved to start at the same time: machines x stretches keys reporting side by side, as
    data keyed by device or card does.

    >>> events = pd.DataFrame({"host": ["a"] * 4 + ["b"] * 2,
    ...                        TIME_MS_COLUMN: [10, 20, 30, 40, 15, 25]})
    >>> as_many_devices(events, "host", 2).values.tolist()
    [['a/0', 10], ['a/0', 20], ['a/1', 10], ['a/1', 20], ['b/0', 10], ['b/1', 10]]
    """
    events = events.sort_values([key_field, TIME_MS_COLUMN], kind="stable")
    by_machine = events.groupby(key_field, sort=False)
    stretch = by_machine.cumcount() * stretches // by_machine[key_field].transform("size")
    keys = events[key_field] + "/" + stretch.astype(str)
    start = events.groupby(keys)[TIME_MS_COLUMN].transform("min")
    return events.assign(**{key_field: keys, TIME_MS_COLUMN: events[TIME_MS_COLUMN] - start
                            + events[TIME_MS_COLUMN].min()})


def bench_many_keys(config, data_dir: Path) -> dict:
    """Scoring a batch of 1,000 windows from 120 keys, each with its own baseline, and the
    size of their model: each SMD machine's train and test halves cut into stretches that
    play distinct devices."""
    key = config.schema.key_field

    def devices(pattern: str) -> pd.DataFrame:
        events = load_events_csv(sorted(data_dir.glob(pattern)), config.schema)
        return as_many_devices(events, key, STRETCHES_PER_MACHINE)

    with tempfile.TemporaryDirectory() as model_dir:
        detector = train_on_events(config, devices("*_train.csv.gz"), {"bench": "many keys"},
                                   Path(model_dir)).scorer
        udf = opened_udf(config, model_dir)
        aggregates = with_recent_levels(windows_for(devices("*_test.csv.gz"), config), config)
        # A batch as the job meets it: every key's windows of the same few window ends.
        batch = aggregates.sort_values(["window_end_ms", key], kind="stable").iloc[:1000]
        seconds = timed(scoring(udf, batch, config))
        own_baseline = sum(detector.scaler_.known(k) for k in batch[key].unique())
        model_mb = (Path(model_dir) / MODEL_FILE).stat().st_size / 1e6
    return {"score_windows_per_s_batch_1000_many_keys": 1000 / seconds,
            "many_keys_in_batch": int(batch[key].nunique()),
            "many_keys_with_own_baseline": int(own_baseline),
            "many_keys_model_mb": model_mb}


def bench_job(config_path: Path, config, data_dir: Path, statistics: list[str] | None = None
              ) -> dict:
    """The whole job, bounded, in a local mini-cluster, on all SMD test events.

    With `statistics`, the job computes only those per metric, with a model trained for them.
    """
    from streamad import jobs_client, stack
    from streamad.replay import send
    from streamad.stack import kafka
    from tests.integration.conftest import write_config
    from tests.integration.helpers import influx_count

    started_servers = stack.up(config, progress=lambda message: None)
    try:
        run = uuid.uuid4().hex[:8]
        job_config, job_path = write_config(
            config, config_path.parent / f"bench-{run}.yaml",
            kafka={"events_topic": f"bench-{run}-events", "alerts_topic": f"bench-{run}-alerts",
                   "dead_letter_topic": f"bench-{run}-dead", "consumer_group": f"bench-{run}"},
            influxdb={"measurement": f"bench_{run}"},
            flink={"job_name": f"streamad-bench-{run}"},
            **({"features": {"statistics": statistics},
                "model": {"artifact_dir": str(config_path.parent / f"bench-{run}-model")}}
               if statistics else {}))
        if statistics:
            train(job_config, sorted(data_dir.glob("*_train.csv.gz")))
        kafka.ensure_topics(job_config.kafka,
                            [job_config.kafka.events_topic, job_config.kafka.alerts_topic,
                             job_config.kafka.dead_letter_topic], job_config.kafka.partitions)
        events = ordered_events(sorted(data_dir.glob("*_test.csv.gz")), job_config)
        messages = list(encoded(events, job_config))
        started = time.perf_counter()
        send(messages, job_config)
        replay_s = time.perf_counter() - started

        started = time.perf_counter()
        result = jobs_client.run_local(job_path, bounded=True, timeout_s=1800)
        job_s = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        points = influx_count(job_config)
        job_path.unlink()
        if statistics:
            shutil.rmtree(job_config.artifact_path)
        return {"job_features": len(feature_names(
                    job_config.schema.metric_fields, job_config.features.statistics,
                    job_config.features.include_count)),
                "job_events": len(messages), "job_wall_s": job_s,
                "job_events_per_s_including_startup": len(messages) / job_s,
                "job_windows_written": points, "replay_events_per_s": len(messages) / replay_s}
    finally:
        stack.down(started_servers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", action="store_true", help="only the Flink-free core")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--statistics", nargs="+", metavar="STAT",
                        help="run the job with only these per-metric statistics "
                             "(results go to throughput-<stats>.json)")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    config_path = REPO / "jobs" / "default.yaml"
    workdir = REPO / "bench" / "results"
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_config(config_path)
    artifact_dir = config.artifact_path
    reason = why_train(config, asked=False)
    if reason:
        print(f"training the model first: {reason}")
        train(config, sorted(data_dir.glob("*_train.csv.gz")))
    load_artifact(artifact_dir)

    results = bench_core(config, data_dir, artifact_dir)
    if not args.core:
        results.update(bench_job(config_path, config, data_dir, args.statistics))
    results_file = (RESULTS.with_name(f"throughput-{'-'.join(args.statistics)}.json")
                    if args.statistics else RESULTS)
    for name, value in results.items():
        print(f"{name:42} {value:,.1f}" if isinstance(value, float) else f"{name:42} {value:,}")
    record = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
              "window": {"size_s": config.window.size_s, "slide_s": config.window.slide_s},
              "command": "bin/streamad bench" + (" --core" if args.core else "")
                         + (f" --statistics {' '.join(args.statistics)}" if args.statistics else ""),
              "results": {k: round(v, 1) if isinstance(v, float) else v
                          for k, v in results.items()}}
    results_file.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {results_file.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
