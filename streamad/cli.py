"""streamad: real-time anomaly detection on Apache Flink.

Every command reads the job configuration (--config, default jobs/default.yaml, with
STREAMAD__<SECTION>__<KEY> environment overrides).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from streamad.config import DEFAULT_CONFIG_PATH, ConfigError, JobConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("STREAMAD_SMD_DIR", REPO.parent / "shared" / "data" / "smd"))


def _say(message: str = "") -> None:
    print(message, flush=True)


def _progress_printer(total: int, label: str):
    started = time.monotonic()
    last = [-1]

    def report(done: int) -> None:
        percent = int(100 * done / total) if total else 100
        if percent // 10 == last[0] // 10 and done != total:
            return
        last[0] = percent
        rate = done / max(time.monotonic() - started, 1e-6)
        _say(f"  {label}: {done:,}/{total:,} ({percent}%, {rate:,.0f}/s)")
    return report


def _smd_files(kind: str, data_dir: Path) -> list[Path]:
    files = sorted(data_dir.glob(f"*_{kind}.csv.gz"))
    if not files:
        raise ConfigError(f"no *_{kind}.csv.gz files in {data_dir}; pass files explicitly, or "
                          f"set STREAMAD_SMD_DIR to the SMD data folder.")
    return files


# --- commands ---------------------------------------------------------------------------

def cmd_stack(args, config: JobConfig) -> int:
    from streamad import stack
    if args.action == "up":
        stack.up(config, progress=_say)
        _print_endpoints(config)
    elif args.action == "down":
        stopped = stack.down()
        _say(f"stopped: {', '.join(stopped) if stopped else 'nothing (no server of ours ran)'}")
    else:
        entries = stack.status(config)
        for entry in entries:
            state = f"running (PID {entry.pid})" if entry.running else "stopped"
            _say(f"{entry.name:18} {state:24} {entry.endpoint}")
        if any(e.running for e in entries if e.name == "flink-jobmanager"):
            for job, model in stack.flink.running_job_models(config.flink.rest_url):
                _say(f"job {job['name']:24} {job['state']:10} model {model or '-':20} "
                     f"{config.flink.rest_url}/#/job/running/{job['jid']}/overview")
        _say(f"logs: {stack.process.logs_dir()}")
    return 0


def _print_endpoints(config: JobConfig) -> None:
    from streamad.stack import influxdb, kafka, kafka_address, process
    _say()
    _say(f"Flink web UI     {config.flink.rest_url}")
    _say(f"Kafka            {config.kafka.bootstrap_servers}  (topics {config.kafka.events_topic}, "
         f"{config.kafka.alerts_topic}, {config.kafka.dead_letter_topic})")
    plain_host, plain_port = kafka_address(config)
    logins = kafka.login_listeners(plain_host, plain_port)
    _say(f"  listeners      {plain_host}:{plain_port} (PLAINTEXT), " + ", ".join(
        f"{host}:{port} ({protocol})" for protocol, (host, port) in logins.items())
        + f"; SASL user {kafka.SASL_USER}, password in {kafka.sasl_password_file()}; the "
          f"TLS ones' CA in {kafka.tls_ca_file()}, SSL's client certificate and key in "
          + " and ".join(str(path) for path in kafka.tls_client_files()))
    _say(f"InfluxDB         {config.influxdb.url}  (database {config.influxdb.database}, "
         f"measurement {config.influxdb.measurement}; credentials in {influxdb.token_path()})")
    _say(f"Logs             {process.logs_dir()}")


def cmd_models(args, config: JobConfig) -> int:
    from models.artifact import METADATA_FILE, pinned_versions, prune_pinned, read_metadata
    from streamad.stack import flink
    from streamad.stack.process import StackError
    folder = config.artifact_path
    current = (read_metadata(folder)["model_version"] if (folder / METADATA_FILE).is_file()
               else None)
    # A job pinned to a model keeps it while it runs (restarts included): ask Flink which.
    in_use: dict[str, list[str]] = {}
    try:
        for job, model in flink.running_job_models(config.flink.rest_url):
            if model:
                in_use.setdefault(model, []).append(f"job {job['name']} ({job['state']})")
    except StackError as error:
        if args.prune:  # without the jobs, a copy a running job needs could go
            raise StackError(f"not pruning: which models the running jobs use is unknown. "
                             f"{error}") from None
        _say(f"(the jobs that use each model are unknown: {error})")
    versions = pinned_versions(folder)
    if current and current not in versions:
        versions.append(current)
    if not versions:
        _say(f"no model in {folder}; train one with 'streamad train'.")
        return 0
    for version in versions:
        uses = (["current (streamad train wrote it last)"] if version == current else []) \
            + in_use.get(version, [])
        _say(f"{version:24} {', '.join(uses) or '-'}")
    if args.prune:
        removed = prune_pinned(folder, keep=set(in_use) | {current})
        _say(f"removed {len(removed)} pinned cop{'y' if len(removed) == 1 else 'ies'} that "
             f"neither is current nor a job on {config.flink.rest_url} runs"
             + (f": {', '.join(removed)}" if removed else ""))
    return 0


def cmd_train(args, config: JobConfig) -> int:
    from models.train import train, train_on_events
    output = Path(args.output) if args.output else None
    if args.from_topic:
        from streamad.history import read_events_topic
        _say(f"Reading the events topic {config.kafka.events_topic} up to its current end...")
        events, reference = read_events_topic(config, max_events=args.max_events)
        _say(f"Training on {len(events):,} events ({reference['rejected_events']} invalid "
             f"left out)...")
        artifact = train_on_events(config, events, reference, output, args.keep_below)
    else:
        files = [Path(f) for f in args.files] or _smd_files("train", Path(args.data_dir))
        _say(f"Training on {len(files)} file(s)...")
        artifact = train(config, files, output, args.keep_below)
    left_out = artifact.metadata["training_data"].get("left_out")
    if left_out:
        _say(f"Left out {left_out['windows']:,} windows that model {left_out['model_version']} "
             f"scores at or above {left_out['keep_below']:g} times its threshold.")
    _report_model(artifact, output or config.artifact_path)
    return 0


def _report_model(artifact, directory: Path) -> None:
    meta = artifact.metadata
    _say(f"Model {artifact.model_version}: {meta['training_data']['windows']:,} windows of "
         f"{meta['training_data']['events']:,} events, {len(artifact.feature_names)} features, "
         f"threshold {artifact.threshold:.4f} ({meta['threshold_method']})")
    _say(f"Written to {directory}")


def cmd_evaluate(args, config: JobConfig) -> int:
    from streamad.evaluate import evaluate
    output = Path(args.output)
    report = evaluate(config, Path(args.data_dir), output, plots=not args.no_plots,
                      progress=not args.no_progress, baselines=not args.no_baselines)
    main = report["rows"][0]
    _say((output / "evaluation.md").read_text())
    _say(f"{main['name']}: mean point F1 {main['mean']['f1']:.3f} "
         f"({main['threshold']}). Written to {output}/evaluation.json, evaluation.md"
         + ("" if args.no_plots else " and one PNG per key"))
    return 0


def cmd_tune(args, config: JobConfig) -> int:
    from models.scorers import SCORERS
    from streamad.tune import tune
    kinds = args.kinds or list(SCORERS)
    unknown = [k for k in kinds if k not in SCORERS]
    if unknown:
        raise SystemExit(f"--kinds names unknown scorers {unknown}; known: {', '.join(SCORERS)}.")
    output = Path(args.output)
    grid = {name: value for name, value in (("caps", args.caps), ("rates", args.rates),
                                            ("pot_risks", args.pot_risks),
                                            ("multiples", args.multiples),
                                            ("statistics", args.statistics)) if value}
    report = tune(config, Path(args.data_dir), output, kinds=kinds,
                  progress=not args.no_progress, **grid)
    _say((output / "tuning.md").read_text())
    _say(f"Mean held-out point F1 (leave one key out): {report['held_out_mean_f1']:.3f}. "
         f"Written to {output}/tuning.json and tuning.md")
    return 0


def _statistics_sets(text: str) -> list[list[str]]:
    sets = [[name.strip() for name in part.split(",") if name.strip()]
            for part in text.split(";") if part.strip()]
    if not sets or not all(sets):
        raise argparse.ArgumentTypeError(
            f"expected sets of window statistics, the sets separated by ';' and the "
            f"statistics by ',', got {text!r} (for example 'mean,std,min,max,last;mean,std')")
    return sets


def _number_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r} "
                                         f"(for example 0.001,0.005)") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _positive(kind: type):
    """An argparse type: a number of `kind` above 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(
                f"expected a {'whole number' if kind is int else 'number'} above 0, got "
                f"{text!r}")
        return value
    return parse


def cmd_submit(args, config: JobConfig) -> int:
    from streamad import jobs_client
    config_path = Path(args.config) if args.config else None
    if args.local:
        _say("Running the job in a local mini-cluster (bounded: it stops at the latest "
             "offsets present now)...")
        result = jobs_client.run_local(config_path, bounded=True)
        sys.stdout.write(result.stdout[-3000:])
        sys.stderr.write(result.stderr[-3000:] if result.returncode else "")
        return result.returncode
    if args.fresh_state and not args.replace:
        raise jobs_client.SubmitError("--fresh-state goes with --replace: it cancels the "
                                      "running job instead of stopping it with a savepoint.")
    job_id = jobs_client.submit(config, config_path, replace=args.replace, bounded=args.bounded,
                                keep_state=not args.fresh_state,
                                from_savepoint=args.from_savepoint)
    _say(f"Job {job_id} runs: {config.flink.rest_url}/#/job/running/{job_id}/overview")
    return 0


def cmd_replay(args, config: JobConfig) -> int:
    from streamad.replay import encoded, ordered_events, send
    files = [Path(f) for f in args.files] or _smd_files("test", Path(args.data_dir))
    events = ordered_events(files, config, limit_per_key=args.limit_per_key)
    _say(f"Replaying {len(events):,} events from {len(files)} file(s) into "
         f"{config.kafka.events_topic}" + (f" at {args.speedup:g}x real time" if args.speedup
                                            else " as fast as the broker takes them") + "...")
    send(encoded(events, config), config, progress=_progress_printer(len(events), "sent"),
         speedup=args.speedup)
    return 0


def cmd_alerts(args, config: JobConfig) -> int:
    from streamad.alerts import format_alert, read_topic
    count = 0
    for _, value in read_topic(config.kafka, config.kafka.alerts_topic,
                               from_beginning=not args.new_only,
                               idle_timeout_s=None if args.follow else args.idle_s):
        count += 1
        _say(format_alert(value))
        if args.max and count >= args.max:
            break
    _say(f"{count} alert(s)")
    return 0


def why_train(config: JobConfig, asked: bool) -> str | None:
    """Why the demo must train before it runs the job; None when the model is current."""
    from models.artifact import ArtifactError, format_mismatch, read_metadata
    from models.train import settings_changed_since_training
    if asked:
        return "--retrain"
    try:
        metadata = read_metadata(config.artifact_path)
    except ArtifactError:
        return f"no model in {config.artifact_path} yet"
    mismatch = format_mismatch(metadata)
    if mismatch:
        return f"the model is in {mismatch}"
    changes = settings_changed_since_training(config, metadata)
    if changes:
        return "the configuration changed since the model was trained: " + "; ".join(changes)
    return None


def cmd_demo(args, config: JobConfig) -> int:
    from streamad import jobs_client, stack
    from streamad.alerts import (end_offsets, format_alert, group_lag, read_topic,
                                 start_group_at_end)
    from streamad.replay import encoded, ordered_events, send
    from streamad.stack import flink, influxdb

    _say("== 1/5 Starting the local stack (installs Kafka, Flink's Kafka connector and "
         "InfluxDB on first use) ==")
    stack.up(config, progress=_say)
    data_dir = Path(args.data_dir)
    reason = why_train(config, args.retrain)
    if reason:
        from models.train import train
        _say(f"== 2/5 Training the model on the SMD train halves ({reason}) ==")
        _report_model(train(config, _smd_files("train", data_dir)), config.artifact_path)
    else:
        _say(f"== 2/5 Using the trained model in {config.artifact_path} (--retrain to redo) ==")
    # Alerts of earlier runs stay in the topic: show only what this run adds.
    alerts_start = end_offsets(config.kafka, config.kafka.alerts_topic)
    _say("== 3/5 Submitting the job to Flink ==")
    jobs_client.cancel_running(config)
    # An earlier run stopped before its job had read everything leaves events unread. The
    # new job would read those first and this run's after them; this run's event times start
    # over, behind the watermark, and its windows would be dropped as late.
    unread = start_group_at_end(config.kafka, config.kafka.events_topic,
                                config.kafka.consumer_group)
    if unread:
        _say(f"  {unread:,} events an earlier run left unread stay unread: the job reads "
             f"this run's replay")
    # The replay starts event time over: the new job takes no state from an earlier one.
    job_id = jobs_client.submit(config, Path(args.config) if args.config else None,
                                replace=True, keep_state=False)
    _say(f"  job {job_id} is running")
    _say("== 4/5 Replaying the SMD test halves into Kafka; alerts as they arrive "
         "(read_committed: only what Flink's checkpoints committed) ==")
    events = ordered_events(_smd_files("test", data_dir), config,
                            limit_per_key=args.limit_per_key)
    replay_errors: list[BaseException] = []

    def run_replay() -> None:
        try:
            send(encoded(events, config), config, progress=_progress_printer(len(events), "sent"))
        except BaseException as exc:  # handed to the main thread below
            replay_errors.append(exc)

    def job_still_reading() -> bool:
        # Until the job has committed everything replayed, more alerts may come however quiet
        # the topic is (its Python workers take a while to start); unless the job stopped.
        if replay.is_alive():
            return True
        job = flink.rest(config.flink.rest_url, f"/jobs/{job_id}")
        return job["state"] == "RUNNING" and group_lag(config.kafka, config.kafka.events_topic,
            config.kafka.consumer_group) > 0

    replay = threading.Thread(target=run_replay, name="replay", daemon=True)
    replay.start()
    count = 0
    for _, value in read_topic(config.kafka, config.kafka.alerts_topic,
                               idle_timeout_s=args.quiet_s, keep_going=job_still_reading,
                               start_offsets=alerts_start):
        count += 1
        if count <= args.show:
            _say(format_alert(value))
        elif count == args.show + 1:
            _say("  ... (more alerts; all of them: bin/streamad alerts)")
    replay.join()
    if replay_errors:
        raise replay_errors[0]
    _say("== 5/5 Summary ==")
    from models.artifact import read_metadata
    version = read_metadata(config.artifact_path)["model_version"]
    # Earlier runs' scores stay in the measurement; this model's are this run's (a window
    # scored again by the same model overwrites its point).
    points = influxdb.query(config.influxdb.url,
                            f'SELECT count("score") FROM "{config.influxdb.measurement}" '
                            f"WHERE \"model_version\" = '{version}'",
                            database=config.influxdb.database,
                            token=config.influxdb.read_token())
    series = points["results"][0].get("series", [])
    scored = series[0]["values"][0][1] if series else 0
    _say()
    _say(f"{count:,} alert(s) from this run; {scored:,} window scores of model {version} in "
         f"InfluxDB.")
    counted = flink.job_counters(config.flink.rest_url, job_id)
    if counted:
        _say("The job's counters (Flink web UI: a task's Metrics tab, streamad.*), as Flink "
             "last fetched them: " + ", ".join(f"{name} {value:,}"
                                               for name, value in counted.items()) + ".")
    _print_endpoints(config)
    _say("Grafana: provisioning and a dashboard are in docker/grafana/.")
    _say("Stop everything with:  bin/streamad stack down")
    return 0


# --- parser -----------------------------------------------------------------------------

def _add_labeled_data_arguments(command: argparse.ArgumentParser) -> None:
    """The options evaluate and tune share: where the labeled data are, where the report goes."""
    command.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                         help="folder of labeled data (default: the SMD folder)")
    command.add_argument("--output", default=str(REPO / "models" / "results" / "smd"),
                         help="folder for the report (default models/results/smd)")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"job configuration YAML (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="start, stop or inspect the local Kafka, Flink "
                                "and InfluxDB", description="up: install what is missing "
                                "(cached in ~/.cache/streamad), start all three, wait until "
                                "healthy, create the topics and the database. down: stop the "
                                "servers streamad started (by PID). status: what runs.")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(func=cmd_stack)

    models = commands.add_parser(
        "models", help="the model versions in the artifact folder and which jobs use them",
        description="List the current model and the copies submitted jobs are pinned to "
                    "(<artifact_dir>/versions), with the jobs on flink.rest_url that score "
                    "with each. --prune removes the copies that neither are current nor a "
                    "job there runs (a job elsewhere pinned to one would fail on its next "
                    "restart).")
    models.add_argument("--prune", action="store_true",
                        help="remove the copies no running job uses")
    models.set_defaults(func=cmd_models)

    train = commands.add_parser("train", help="fit the model on historical events (CSV or topic)",
                                description="Fit the configured detector (model.kind) on the "
                                "window features of historical events and write a versioned "
                                "artifact with its metadata. Per-key alert thresholds are set "
                                "without labels (model.threshold_method).")
    train.add_argument("files", nargs="*", help="CSV files (default: the SMD train halves)")
    train.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="SMD data folder")
    train.add_argument("--output", help="artifact folder (default: model.artifact_dir)")
    train.add_argument("--from-topic", action="store_true",
                       help="train on the events topic (a bounded read: from the beginning to "
                            "its end now) instead of CSV files")
    train.add_argument("--max-events", type=_positive(int),
                       help="with --from-topic: read at most this many")
    train.add_argument("--keep-below", type=_positive(float), metavar="MULTIPLE",
                       help="leave out the windows the current model (at model.artifact_dir) "
                            "scores at or above MULTIPLE times its threshold, so that a "
                            "retrain on live events does not learn the anomalies in them "
                            "(1: what it flags; of 0.2, 0.4 and 1, 0.4 lost least in the "
                            "daily retrain of scripts/drift_study.py)")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="measure detection quality on labeled data",
        description="Train the configured detector on <key>_train.csv[.gz] files and score "
        "the labeled <key>_test.csv[.gz] files of a folder (the SMD layout; an optional "
        "<key>_interpretation_label.txt lists the metrics behind each labeled segment). "
        "Prints and writes point-wise precision/recall/F1, composite F1, PA%%K (K=20), "
        "segments found and missed, detection delay, false alarms per day and the "
        "explanation hit rate, beside other scorers, raw-event baselines and random scores; "
        "label-tuned thresholds are reported apart. Writes evaluation.json, evaluation.md "
        "and a PNG per key.")
    _add_labeled_data_arguments(evaluate)
    evaluate.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    evaluate.add_argument("--no-baselines", action="store_true",
                          help="only the configured detector and random scores (faster, for "
                               "trying settings)")
    evaluate.set_defaults(func=cmd_evaluate)

    tune = commands.add_parser(
        "tune", help="choose detector settings on labeled data, by leave-one-key-out",
        description="Train and score every candidate (scorer kind x cap x unsupervised "
        "threshold rule, x window statistics with --statistics) on the labeled folder that "
        "evaluate reads. For each key, the "
        "candidate with the best mean point F1 on the other keys is scored on it: the mean of "
        "those held-out F1s is what tuning gives on a new key. Prints and writes tuning.json "
        "and tuning.md, with the candidate chosen on all keys as a configuration snippet.")
    _add_labeled_data_arguments(tune)
    tune.add_argument("--kinds", type=lambda text: [k.strip() for k in text.split(",")],
                      help="scorers to try, comma-separated (default: all)")
    tune.add_argument("--caps", type=_number_list,
                      help="scaling caps to try, comma-separated (default: 5,10)")
    tune.add_argument("--rates", type=_number_list,
                      help="target alert rates of the quantile threshold (default: "
                           "0.001,0.002,0.005,0.01,0.02)")
    tune.add_argument("--pot-risks", type=_number_list,
                      help="tail risks of the POT threshold (default: 0.001,0.0001)")
    tune.add_argument("--multiples", type=_number_list,
                      help="multiples of the median training score for the median_multiple "
                           "threshold, tried with scorers whose zero means normal (default: "
                           "8,10,12,15,20,25,30,40,50,60,80,100)")
    tune.add_argument("--statistics", type=_statistics_sets,
                      help="sets of window statistics to make the features of, tried beside "
                           "the configured features.statistics: sets separated by ';', "
                           "statistics by ',' (for example 'mean,std;mean,std,max'; default: "
                           "the configured set alone)")
    tune.set_defaults(func=cmd_tune)

    submit = commands.add_parser("submit", help="submit the job to the Flink cluster",
                                 description="Submit jobs/anomaly_job.py with flink run -py "
                                 "(detached) to flink.rest_url, or run it in a local "
                                 "mini-cluster with --local.")
    submit.add_argument("--replace", action="store_true",
                        help="replace a running job of the same name: stop it with a savepoint "
                             "(flink.savepoint_dir) and start the new job from it, so windows, "
                             "recent levels, open incidents and drift runs carry over (the way "
                             "to put a retrained model to work)")
    submit.add_argument("--fresh-state", action="store_true",
                        help="with --replace: cancel the running job instead, and start "
                             "without its state")
    submit.add_argument("--from-savepoint", metavar="PATH", default=None,
                        help="start from this savepoint or retained checkpoint")
    submit.add_argument("--bounded", action="store_true",
                        help="stop at the latest offsets present at start")
    submit.add_argument("--local", action="store_true",
                        help="run bounded in a local mini-cluster instead of the cluster")
    submit.set_defaults(func=cmd_submit)

    replay = commands.add_parser("replay", help="replay CSV events into the events topic",
                                 description="Send historical events as JSON, keyed by the "
                                 "schema's key, in event-time order.")
    replay.add_argument("files", nargs="*", help="CSV files (default: the SMD test halves)")
    replay.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="SMD data folder")
    replay.add_argument("--limit-per-key", type=_positive(int),
                        help="send at most this many events per key")
    replay.add_argument("--speedup", type=_positive(float),
                        help="pace events at this many times real time (default: no pacing)")
    replay.set_defaults(func=cmd_replay)

    alerts = commands.add_parser("alerts", help="print alerts from the alerts topic",
                                 description="Read the alerts topic with "
                                 "isolation.level=read_committed, as any consumer should.")
    alerts.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    alerts.add_argument("--new-only", action="store_true", help="skip alerts already there")
    alerts.add_argument("--idle-s", type=_positive(float), default=10,
                        help="stop after this many seconds without an alert (default 10)")
    alerts.add_argument("--max", type=_positive(int), help="stop after this many alerts")
    alerts.set_defaults(func=cmd_alerts)

    demo = commands.add_parser("demo", help="the whole product on SMD: stack, train, submit, "
                               "replay, alerts", description="Start the local stack, train on "
                               "the SMD train halves, submit the job, replay the test halves "
                               "and print the alerts. The stack keeps running afterwards.")
    demo.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="SMD data folder")
    demo.add_argument("--retrain", action="store_true", help="train even if a model exists")
    demo.add_argument("--limit-per-key", type=_positive(int),
                      help="replay at most this many events per key")
    demo.add_argument("--show", type=int, default=40, help="alerts to print (default 40)")
    demo.add_argument("--quiet-s", type=_positive(float), default=45,
                      help="once the job has read all replayed events, stop reading alerts "
                           "after this many quiet seconds (default 45)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # kafka-python warns about its own event loop timing; its errors still show.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        return args.func(args, config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a clear one-line reason for people; details with -v
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError
        from models.artifact import ArtifactError
        from models.data import DataError
        from streamad.evaluate import EvaluationError
        from streamad.jobs_client import SubmitError
        from streamad.stack.process import StackError, not_answering
        if args.verbose:
            raise
        if isinstance(exc, (ArtifactError, DataError, EvaluationError, SubmitError,
                            StackError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
            print(f"error: {not_answering('Kafka', config.kafka.bootstrap_servers, exc)}",
                  file=sys.stderr)
            if config.kafka.uses_sasl:  # a refused login looks the same to kafka-python
                print(f"With {config.kafka.security_protocol}, a wrong user or password gives "
                      f"this too: check kafka.sasl_username ({config.kafka.sasl_username}) and "
                      f"the password's file or variable.", file=sys.stderr)
            if config.kafka.uses_client_certificate:
                print(f"A client certificate the brokers do not accept gives this too: check "
                      f"that their CA signed kafka.ssl_certificate_file "
                      f"({config.kafka.ssl_certificate_file}).", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
