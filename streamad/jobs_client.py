"""Submitting the job to a Flink cluster, and running it in a local mini-cluster."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from streamad.config import JobConfig
from streamad.stack import flink, process

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
JOB_SCRIPT = REPO / "jobs" / "anomaly_job.py"
# Shipped with the job, so TaskManagers elsewhere can import the UDFs and the scoring core.
PY_FILES = [REPO / name for name in ("streamad", "models", "udfs", "jobs")]


# When the running job cannot stop with a savepoint.
FRESH_STATE_ADVICE = ("submit with --replace --fresh-state to cancel it and start without its "
                      "state.")


class SubmitError(RuntimeError):
    pass


def _job_args(config_path: Path | None, bounded: bool, ship_connector: bool = True
              ) -> list[str]:
    args = ["--connector-jar", str(flink.connector_jar())] if ship_connector else []
    if config_path is not None:
        args += ["--config", str(Path(config_path).resolve())]
    if bounded:
        args.append("--bounded")
    return args


def submit(config: JobConfig, config_path: Path | None, replace: bool = False,
           bounded: bool = False, keep_state: bool = True, from_savepoint: str | None = None,
           timeout_s: float = 180) -> str:
    """Submit the job detached to the cluster at flink.rest_url; returns the job id.

    With `replace`, a job of the same name that runs is stopped first: with a savepoint in
    flink.savepoint_dir that the new job starts from (`keep_state`), so the windows open at
    the switch, each key's recent levels, open incidents and drift runs carry over and the
    new job reads on from where the old one stopped; or cancelled (`keep_state` False), and
    the new job starts with no state at the consumer group's committed offsets.
    `from_savepoint` starts the job from a savepoint (or retained checkpoint) given by hand.
    """
    # Built first: a flink.home without bin/flink, or a connector that cannot be downloaded,
    # must fail before the running job is stopped.
    argv, env = flink_run_command(config, config_path, bounded)
    savepoint = from_savepoint
    if replace and keep_state:
        stopped = stop_running(config)  # also when a savepoint is given: one job of a name
        savepoint = from_savepoint or stopped
    elif replace:
        cancel_running(config)
    elif running := flink.running_jobs(config.flink.rest_url, config.flink.job_name):
        raise SubmitError(
            f"job {config.flink.job_name!r} already runs on {config.flink.rest_url} "
            f"(id {running[0]['jid']}); cancel it first, or submit with --replace.")
    if savepoint:
        argv = [*argv[:2], "-s", savepoint, *argv[2:]]  # flink run -s <savepoint> ...
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s)
    output = result.stdout + result.stderr
    job_id = next((line.split()[2] for line in output.splitlines()
                   if line.startswith("submitted job ")), None)
    if savepoint and "Cannot map checkpoint/savepoint state" in output:
        raise SubmitError(
            f"the new job cannot start from the state in {savepoint}: that state has operators "
            f"the new job does not (a change of window, features or the model's recent-level "
            f"span changes the job's operators), and Flink will not drop state unasked."
            + _restore_advice(savepoint))
    if result.returncode != 0 or job_id is None:
        interesting = [line for line in output.splitlines()
                       if "Error" in line or "Exception" in line or "error:" in line]
        raise SubmitError("flink run failed:\n" + "\n".join((interesting or
                                                            output.splitlines())[-12:])
                          + _restore_advice(savepoint))
    try:
        _wait_for_state(config, job_id, {"RUNNING"}, 90)
    except SubmitError as error:
        raise SubmitError(f"{error}{_restore_advice(savepoint)}") from None
    return job_id


def flink_run_command(config: JobConfig, config_path: Path | None, bounded: bool
                      ) -> tuple[list[str], dict[str, str]]:
    """The `flink run` that submits the job detached, and its environment: the local stack's
    Flink configuration and log folder, or, with a ``flink.home``, that distribution's own
    (its conf/ and log/, or FLINK_CONF_DIR as set)."""
    python = sys.executable
    argv = [str(flink.cli(config.flink.home)), "run", "-d",
            "-m", config.flink.rest_url.split("://", 1)[-1],
            "-py", str(JOB_SCRIPT), "-pyfs", ",".join(map(str, PY_FILES)),
            "-pyexec", python, "-pyclientexec", python,
            *_job_args(config_path, bounded, config.flink.ship_connector)]
    env = {**os.environ, "PYFLINK_CLIENT_EXECUTABLE": python}
    if not config.flink.home:
        env.update(FLINK_CONF_DIR=str(flink.conf_dir()),
                   FLINK_LOG_DIR=str(process.logs_dir() / "flink"))
    return argv, env


def _restore_advice(savepoint: str | None) -> str:
    if not savepoint:
        return ""
    return (f"\nNo job of this name runs now. To start without the state, submit with --replace "
            f"--fresh-state: the windows open at the switch then miss their earlier events, "
            f"and open incidents get no end alert. The state stays in the savepoint, for "
            f"--from-savepoint {savepoint}.")


def stop_running(config: JobConfig) -> str | None:
    """Stop the job named flink.job_name with a savepoint in flink.savepoint_dir, waiting
    until it has stopped; returns the savepoint's location (None when no such job runs)."""
    running = flink.running_jobs(config.flink.rest_url, config.flink.job_name)
    if len(running) > 1:
        raise SubmitError(f"{len(running)} jobs named {config.flink.job_name!r} run on "
                          f"{config.flink.rest_url}; cancel all but one in the web UI first.")
    if not running:
        return None
    job_id = running[0]["jid"]
    # Flink takes a savepoint only once every task runs, a while after the job does.
    _wait_for_tasks(config, job_id, timeout_s=120)
    try:
        location = flink.stop_with_savepoint(config.flink.rest_url, job_id,
                                             config.flink.savepoint_uri)
    except flink.SavepointError as error:
        raise SubmitError(f"{str(error).rstrip('.')}. The job runs on; "
                          f"{FRESH_STATE_ADVICE}") from None
    _wait_for_state(config, job_id, {"FINISHED", "CANCELED", "FAILED"}, 60)
    log.info("job %s stopped with savepoint %s", job_id, location)
    return location


def cancel_running(config: JobConfig) -> list[str]:
    """Cancel the jobs named flink.job_name on the cluster, waiting until each has stopped;
    returns their ids."""
    running = flink.running_jobs(config.flink.rest_url, config.flink.job_name)
    for job in running:
        flink.cancel_job(config.flink.rest_url, job["jid"])
        _wait_for_state(config, job["jid"], {"CANCELED", "FAILED", "FINISHED"}, 60)
    return [job["jid"] for job in running]


def _wait_for_tasks(config: JobConfig, job_id: str, timeout_s: float) -> None:
    """Wait until every task of the job runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = flink.rest(config.flink.rest_url, f"/jobs/{job_id}")
        waiting = sorted({v["status"] for v in job["vertices"]} - {"RUNNING"})
        if job["state"] == "RUNNING" and not waiting:
            return
        if time.monotonic() > deadline:
            raise SubmitError(
                f"job {job_id} is {job['state']} with tasks {', '.join(waiting)} after "
                f"{timeout_s:.0f} s, and only a job whose tasks all run can stop with a "
                f"savepoint; see {config.flink.rest_url}/#/job/running/{job_id}/overview, or "
                f"{FRESH_STATE_ADVICE}")
        time.sleep(1)


def _wait_for_state(config: JobConfig, job_id: str, states: set[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        state = flink.rest(config.flink.rest_url, f"/jobs/{job_id}")["state"]
        if state in states:
            return state
        if state in ("FAILED", "CANCELED") and state not in states:
            raise SubmitError(f"job {job_id} is {state}; see {config.flink.rest_url}/#/job/"
                              f"completed/{job_id}/exceptions")
        time.sleep(1)
    raise SubmitError(f"job {job_id} did not reach {sorted(states)} within {timeout_s:.0f} s "
                      f"(last state {state}).")


def run_local(config_path: Path | None, bounded: bool = True, timeout_s: float = 900,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the job in a local mini-cluster in a child process, waiting for it to end."""
    argv = [sys.executable, str(JOB_SCRIPT), "--wait", "--python", sys.executable,
            *_job_args(config_path, bounded)]
    log_dir = process.logs_dir()
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **(env or {}),
                               "FLINK_LOG_DIR": str(log_dir / "flink-local")})
