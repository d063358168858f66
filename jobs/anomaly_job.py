"""The streamad Flink job: Kafka events -> event-time windows -> model scores -> InfluxDB + alerts.

Submit it to a cluster (what `streamad submit` does):

    flink run -d -py jobs/anomaly_job.py -pyfs models,udfs,streamad,jobs -- --config jobs/default.yaml

or run it in a local mini-cluster with ``python jobs/anomaly_job.py --local``. See jobs/sql.py
for the SQL and the data's path through it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by `flink run -py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Configuration  # noqa: E402
from pyflink.datastream import StreamExecutionEnvironment  # noqa: E402
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table  # noqa: E402
from pyflink.table.udf import udf  # noqa: E402

from jobs import sql  # noqa: E402
from models.artifact import pinned_artifact, verify_artifact  # noqa: E402
from models.features import aggregate_columns, feature_names, recent_level_names  # noqa: E402
from models.train import settings_changed_since_training  # noqa: E402
from streamad.config import JobConfig, load_config  # noqa: E402
from udfs.incident_alerts import IncidentAlerts, alert_type_info  # noqa: E402
from udfs.influx_sink import WriteScoresToInflux  # noqa: E402
from udfs.scoring import ParseEvents, ScoreWindows, parse_result_type, score_result_type  # noqa: E402

log = logging.getLogger("streamad.job")


def job_features(config: JobConfig) -> list[str]:
    return feature_names(config.schema.metric_fields, config.features.statistics,
                         config.features.include_count)


def job_settings(config: JobConfig, connector_jar: str | None,
                 python_executable: str | None = None) -> dict[str, str]:
    settings = {
        "pipeline.name": config.flink.job_name,
        "parallelism.default": str(config.flink.parallelism),
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": f"{config.window.idle_timeout_s} s",
        "execution.checkpointing.interval": f"{config.flink.checkpoint_interval_s} s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": config.flink.checkpoint_uri,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": "rocksdb",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(config.flink.restart_attempts),
        "restart-strategy.fixed-delay.delay": f"{config.flink.restart_delay_s} s",
        "python.fn-execution.bundle.size": str(config.flink.python_bundle_size),
        "python.fn-execution.bundle.time": str(config.flink.python_bundle_time_ms),
        "python.fn-execution.arrow.batch.size": str(config.flink.python_bundle_size),
    }
    if connector_jar:
        settings["pipeline.jars"] = Path(connector_jar).resolve().as_uri()
    if python_executable:  # a cluster brings its own (python.executable in its config)
        settings["python.executable"] = python_executable
    return settings


def create_environment(config: JobConfig, connector_jar: str | None,
                       python_executable: str | None = None
                       ) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """A table environment over a stream environment (the alert policy is a DataStream step),
    both with the job's settings."""
    settings = job_settings(config, connector_jar, python_executable)
    configuration = Configuration()
    for key, value in settings.items():
        configuration.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(configuration)
    t_env = StreamTableEnvironment.create(env)
    for key, value in settings.items():
        t_env.get_config().set(key, value)
    return env, t_env


def _computed_once(t_env: StreamTableEnvironment, name: str, table: Table,
                   rowtime: str | None = None) -> None:
    """Register `table` as view `name`, computed once for all its readers. With `rowtime`,
    the view gets that column: the event time of each row, with the upstream watermarks."""
    stream = t_env.to_data_stream(table)
    if rowtime is None:
        t_env.create_temporary_view(name, t_env.from_data_stream(stream))
        return
    schema = (Schema.new_builder()
              .column_by_metadata(rowtime, DataTypes.TIMESTAMP_LTZ(3))
              .watermark(rowtime, "SOURCE_WATERMARK()")
              .build())
    t_env.create_temporary_view(name, t_env.from_data_stream(stream, schema))


def build_job(t_env: StreamTableEnvironment, config: JobConfig,
              options: sql.RunOptions = sql.RunOptions(),
              recent_level_windows: int | None = None,
              model: tuple[Path, str] | None = None):
    """Create the tables, views, UDFs and the alert policy; return the job's statement set.
    `recent_level_windows` is what the model's explanations weigh (the configuration's
    model.explain_recent_windows unless given; `main` gives the model's own). `model` is the
    folder and version of the model to score with (the configuration's artifact folder,
    whatever it holds when the workers start, unless given; `main` gives the pinned copy)."""
    schema = config.schema
    features = job_features(config)
    aggregates = aggregate_columns(schema.metric_fields)
    explain_top = config.model.explain_top
    if recent_level_windows is None:
        recent_level_windows = config.model.explain_recent_windows

    parse = udf(ParseEvents(schema.key_field, schema.time_field, schema.time_format,
                            schema.metric_fields),
                result_type=parse_result_type(schema.metric_fields), func_type="pandas")
    model_dir, model_version = model if model else (config.artifact_path, None)
    score = udf(ScoreWindows(str(model_dir), schema.metric_fields,
                             config.features.statistics, config.features.include_count,
                             explain_top, recent_level_windows, model_version),
                result_type=score_result_type(features, explain_top), func_type="pandas")
    influx = config.influxdb
    write = udf(WriteScoresToInflux(influx.url, influx.org, influx.bucket, influx.measurement,
                                    schema.key_field, features, influx.token_file,
                                    influx.write_timeout_ms),
                result_type="BIGINT", func_type="pandas")
    t_env.create_temporary_function(sql.PARSE_UDF, parse)
    t_env.create_temporary_function(sql.SCORE_UDF, score)
    t_env.create_temporary_function(sql.WRITE_UDF, write)

    for statement in (sql.source_ddl(config, options), sql.dead_letter_ddl(config),
                      sql.alerts_ddl(config), sql.influx_writes_ddl()):
        t_env.execute_sql(statement)
    # Two results have two readers each: the checked events (dead letters, windows) and the
    # scored windows (InfluxDB, alert policy). Each is computed once and handed over as a
    # stream; a view on the SQL alone would be planned once per reader, because the
    # DataStream step and the SQL sinks are planned apart, and the job would read the topic
    # and run the Python UDFs twice.
    _computed_once(t_env, "checked", t_env.sql_query(sql.checked_query(config)),
                   rowtime=sql.ROWTIME)
    for name, query in (("good_events", sql.good_events_query(config)),
                        ("window_aggregates", sql.window_aggregates_query(config))):
        t_env.create_temporary_view(name, t_env.sql_query(query))
    scored_from, arguments = "window_aggregates", aggregates
    if recent_level_windows:
        t_env.create_temporary_view("windows_with_levels", t_env.sql_query(
            sql.windows_with_levels_query(config, recent_level_windows)))
        scored_from = "windows_with_levels"
        arguments = aggregates + recent_level_names(schema.metric_fields)
    _computed_once(t_env, "scored", t_env.sql_query(sql.scored_query(arguments, scored_from)))

    # The alert policy keeps per-key state across windows: a keyed process function.
    windows = t_env.to_data_stream(t_env.sql_query(sql.scored_windows_query(explain_top)))
    incident_alerts = (windows
                       .key_by(lambda row: row[0])
                       .process(IncidentAlerts(config.alerts.policy(config.window),
                                               config.alerts.drift_policy(),
                                               explain_top),
                                output_type=alert_type_info(explain_top))
                       .name("incident alert policy").uid("incident-alert-policy"))
    t_env.create_temporary_view("incident_alerts", t_env.from_data_stream(incident_alerts))

    statements = t_env.create_statement_set()
    statements.add_insert_sql(sql.insert_dead_letters())
    statements.add_insert_sql(sql.insert_influx_writes(features))
    statements.add_insert_sql(sql.insert_alerts(explain_top))
    return statements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="job configuration YAML "
                        "(default: jobs/default.yaml)")
    parser.add_argument("--connector-jar", default=None,
                        help="Kafka connector jar to ship with the job (pipeline.jars)")
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the latest offsets present at start")
    parser.add_argument("--wait", action="store_true",
                        help="block until the job ends (a bounded or local run)")
    parser.add_argument("--python", default=None,
                        help="Python interpreter for the UDF workers (local runs); a cluster "
                             "uses its own python.executable")
    parser.add_argument("--explain", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    # Fail here, at submission, rather than in every TaskManager: a missing, altered or
    # mismatched model artifact stops the job before it starts.
    metadata = verify_artifact(config.artifact_path, job_features(config))
    # The job scores with this model for as long as it runs, failovers included, whatever
    # 'streamad train' writes to the artifact folder meanwhile.
    model_dir = pinned_artifact(config.artifact_path, metadata)
    log.info("model %s from %s, pinned at %s", metadata["model_version"],
             config.artifact_path, model_dir)
    changes = settings_changed_since_training(config, metadata)
    if changes:
        log.warning("the model was trained with other settings than the configuration now "
                    "gives (%s); the job scores as the model was trained. Run 'streamad train' "
                    "to apply the configuration.", "; ".join(changes))

    env, t_env = create_environment(config, args.connector_jar, args.python)
    # Shown in the web UI (the job's Configuration tab, "User Configuration") and in REST:
    # which model this job scores with.
    env.get_config().set_global_job_parameters({
        "streamad.model_version": metadata["model_version"],
        "streamad.model_dir": str(model_dir)})
    # The recent levels the model's explanations were trained with, whatever the
    # configuration now says: the job scores as the model was trained.
    recent_level_windows = metadata.get("settings", {}).get("explain_recent_windows", 0)
    statements = build_job(t_env, config, sql.RunOptions(bounded=args.bounded),
                           recent_level_windows, (model_dir, metadata["model_version"]))
    if args.explain:
        print(statements.explain())
        return 0
    # The SQL sinks and the DataStream alert policy run as one job.
    statements.attach_as_datastream()
    if args.wait:
        env.execute(config.flink.job_name)
        return 0
    job_client = env.execute_async(config.flink.job_name)
    print(f"submitted job {job_client.get_job_id()} ({config.flink.job_name})", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
