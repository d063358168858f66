"""A standalone Flink cluster (JobManager + one TaskManager) from the apache-flink wheel's bin/.

The configuration is flink-conf/config.yaml rendered into <state>/flink-conf with the keys in
`_rendered_keys`; site-packages is never edited. The Kafka connector jar comes from Maven
Central into the cache and is shipped with each job (pipeline.jars), not put on the classpath.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from udfs.metrics import METRIC_GROUP

from . import process
from .versions import KAFKA_CONNECTOR_ARTIFACT, KAFKA_CONNECTOR_VERSION

log = logging.getLogger(__name__)
JOBMANAGER, TASKMANAGER = "flink-jobmanager", "flink-taskmanager"
REPO_CONF = Path(__file__).resolve().parents[2] / "flink-conf" / "config.yaml"


def flink_home() -> Path:
    import pyflink
    return Path(pyflink.__file__).resolve().parent


def cli(home: str = "") -> Path:
    """The flink command that submits jobs: `home`'s bin/flink (a cluster's own distribution,
    ``flink.home``), or the apache-flink wheel's when `home` is empty."""
    if not home:
        return flink_home() / "bin" / "flink"
    command = Path(home) / "bin" / "flink"
    if not command.is_file():
        raise process.StackError(
            f"flink.home is {home}, which has no bin/flink: set it to a Flink distribution's "
            f"folder (FLINK_HOME), or leave it empty to submit with the apache-flink wheel's.")
    return command


def connector_jar() -> Path:
    """The Kafka SQL connector jar for the pinned Flink, downloaded once with Maven."""
    jar = process.cache_dir() / "jars" / f"flink-sql-connector-kafka-{KAFKA_CONNECTOR_VERSION}.jar"
    if jar.is_file():
        return jar
    if shutil.which("mvn") is None:
        raise process.StackError("Maven (mvn) is needed to download the Flink Kafka connector "
                                 "from Maven Central; install it ('apt-get install maven').")
    jar.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from Maven Central (once)...", KAFKA_CONNECTOR_ARTIFACT)
    process.run_checked(
        ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={KAFKA_CONNECTOR_ARTIFACT}",
         f"-DoutputDirectory={jar.parent}", "-Dmdep.overWriteReleases=true"],
        "downloading the Flink Kafka connector", "install-flink-connector")
    return jar


def conf_dir() -> Path:
    return process.state_dir() / "flink-conf"


def render_conf(rest_url: str) -> Path:
    """Write <state>/flink-conf from flink-conf/config.yaml plus this machine's settings."""
    settings = yaml.safe_load(REPO_CONF.read_text())
    settings.update(_rendered_keys(rest_url))
    target = conf_dir()
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(
        "# Rendered by `streamad stack up` from flink-conf/config.yaml: edit that file.\n"
        + yaml.safe_dump(settings, sort_keys=True, width=100_000))
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
        shutil.copy(flink_home() / "conf" / name, target / name)
    _link_lib_dir()
    return target


def lib_dir() -> Path:
    return process.state_dir() / "flink" / "lib"


def _link_lib_dir() -> None:
    """The cluster's classpath: the wheel's lib/ plus its opt/flink-python jar, and the Kafka
    connector.

    The wheel keeps flink-python in opt/, where `flink run` finds it for the client but the
    JobManager and TaskManager do not: without it a Python job fails at submission with
    ClassNotFoundException ...ArrowPythonScalarFunctionOperator.

    The connector belongs on the cluster's classpath too, not only in each job's: Kafka's
    client registers its SCRAM login JVM-wide (a java.security provider) from the class
    loader of the first job that logs in, and once that job ends its class loader is closed,
    so every later job on the same JobManager failed its SCRAM login with
    NoClassDefFoundError ...ScramMessages$ServerFinalMessage, and its source retried in a
    tight loop. From lib/ the connector's classes (under org.apache.flink., which Flink loads
    parent-first) come from the cluster's class loader, which lives as long as the JVM.
    """
    target = lib_dir()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    home = flink_home()
    for jar in [*sorted((home / "lib").glob("*.jar")),
                *sorted((home / "opt").glob("flink-python-*.jar")), connector_jar()]:
        (target / jar.name).symlink_to(jar)


def _rendered_keys(rest_url: str) -> dict:
    parsed = urllib.parse.urlparse(rest_url)
    state = process.state_dir() / "flink"
    return {
        "rest.port": parsed.port or 8081,
        "execution.checkpointing.dir": (state / "checkpoints").resolve().as_uri(),
        "execution.checkpointing.savepoint-dir": (state / "savepoints").resolve().as_uri(),
        "io.tmp.dirs": str(state / "tmp"),
        # Workers and the job client run the interpreter that has pyflink and this project.
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }


def _env() -> dict[str, str]:
    log_dir = process.logs_dir() / "flink"
    log_dir.mkdir(parents=True, exist_ok=True)
    (process.state_dir() / "flink" / "tmp").mkdir(parents=True, exist_ok=True)
    return {"FLINK_CONF_DIR": str(conf_dir()), "FLINK_LOG_DIR": str(log_dir),
            "FLINK_LIB_DIR": str(lib_dir()),
            "FLINK_PID_DIR": str(process.state_dir() / "flink"),
            "PYFLINK_CLIENT_EXECUTABLE": sys.executable}


def start(rest_url: str) -> bool:
    """Start the JobManager and TaskManager unless ours run; True if this call started any."""
    parsed = urllib.parse.urlparse(rest_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 8081
    connector_jar()
    started = False
    if process.running_pid(JOBMANAGER) is None:
        process.require_free_port(host, port, "STREAMAD__FLINK__REST_URL")
        render_conf(rest_url)
        process.start_process(JOBMANAGER, [str(flink_home() / "bin" / "jobmanager.sh"),
                                           "start-foreground"], env=_env())
        started = True
    if process.running_pid(TASKMANAGER) is None:
        if not lib_dir().is_dir():
            render_conf(rest_url)
        start_taskmanager()
        started = True
    process.wait_until(lambda: _registered_taskmanagers(rest_url) >= 1, 120,
                       f"a TaskManager registered at {rest_url}", JOBMANAGER)
    return started


def start_taskmanager() -> int:
    """Start (or, after a crash, restart) the TaskManager; returns its PID."""
    return process.start_process(TASKMANAGER, [str(flink_home() / "bin" / "taskmanager.sh"),
                                               "start-foreground"], env=_env())


def stop() -> bool:
    stopped_tm = process.stop_process(TASKMANAGER, timeout_s=30)
    stopped_jm = process.stop_process(JOBMANAGER, timeout_s=30)
    return stopped_tm or stopped_jm


def rest(rest_url: str, path: str, method: str = "GET", timeout_s: float = 10,
         body: dict | None = None) -> dict | list:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{rest_url.rstrip('/')}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with process.open_url(request, timeout_s, "Flink's REST API") as response:
        answer = response.read()
    return json.loads(answer) if answer else {}


def _registered_taskmanagers(rest_url: str) -> int:
    return len(rest(rest_url, "/taskmanagers").get("taskmanagers", []))


def running_jobs(rest_url: str, name: str | None = None) -> list[dict]:
    jobs = rest(rest_url, "/jobs/overview").get("jobs", [])
    return [job for job in jobs if job["state"] in ("RUNNING", "CREATED", "RESTARTING",
                                                    "INITIALIZING")
            and (name is None or job["name"] == name)]


def job_model(rest_url: str, job_id: str) -> str | None:
    """The model version a streamad job scores with (None for another job): the job shows
    it among its global job parameters (jobs/anomaly_job.py)."""
    config = rest(rest_url, f"/jobs/{job_id}/config").get("execution-config", {})
    return (config.get("user-config") or {}).get("streamad.model_version")


def running_job_models(rest_url: str) -> list[tuple[dict, str | None]]:
    """Each job that runs (`running_jobs`), with the model version it scores with
    (`job_model`)."""
    return [(job, job_model(rest_url, job["jid"])) for job in running_jobs(rest_url)]


def cancel_job(rest_url: str, job_id: str) -> None:
    rest(rest_url, f"/jobs/{job_id}?mode=cancel", method="PATCH")


class SavepointError(RuntimeError):
    """A savepoint Flink could not take; the message has Flink's reason."""


def stop_with_savepoint(rest_url: str, job_id: str, directory_uri: str,
                        timeout_s: float = 300) -> str:
    """Stop the job the way Flink stops a job for an upgrade: a final savepoint in
    `directory_uri`, the sinks' transactions committed, then FINISHED. Returns the
    savepoint's location, for the next job to start from. The job keeps running when the
    savepoint fails."""
    trigger = rest(rest_url, f"/jobs/{job_id}/stop", method="POST",
                   body={"targetDirectory": directory_uri, "drain": False})["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest(rest_url, f"/jobs/{job_id}/savepoints/{trigger}")
        if status["status"]["id"] == "COMPLETED":
            operation = status.get("operation", {})
            if "location" in operation:
                return operation["location"]
            cause = operation.get("failure-cause", {}).get("stack-trace", "no reason given")
            raise SavepointError(f"Flink could not stop job {job_id} with a savepoint in "
                                 f"{directory_uri}: {cause.splitlines()[0]}")
        time.sleep(0.5)
    raise SavepointError(f"job {job_id}'s savepoint in {directory_uri} was not done within "
                         f"{timeout_s:.0f} s; see {rest_url}/#/job/running/{job_id}/checkpoints")


def job_counters(rest_url: str, job_id: str, group: str = METRIC_GROUP) -> dict[str, int]:
    """The job's counters in `group` (udfs/metrics.py counts them), each summed over its
    subtasks, by name. A counter shows only once its operator has reported it: {} before."""
    marker = f".{group}."
    totals: dict[str, int] = {}
    for vertex in rest(rest_url, f"/jobs/{job_id}")["vertices"]:
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        # Ids are "<subtask>.<operator>.<group>.<name>", one per subtask.
        ids = [metric["id"] for metric in rest(rest_url, path) if marker in metric["id"]]
        if not ids:
            continue
        query = urllib.parse.urlencode({"get": ",".join(ids)})
        for metric in rest(rest_url, f"{path}?{query}"):
            name = metric["id"].rsplit(marker, 1)[1]
            totals[name] = totals.get(name, 0) + int(float(metric["value"]))
    return dict(sorted(totals.items()))
