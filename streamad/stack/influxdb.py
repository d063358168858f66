"""A local InfluxDB 1.8 server, built from the Go module proxy, with authentication on.

The admin credentials are made on first start and kept in <state>/influxdb/token (mode 0600)
as "user:password", which is the token form influxdb-client uses against InfluxDB 1.8+.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from . import process
from .versions import INFLUXDB_MODULE, INFLUXDB_VERSION

log = logging.getLogger(__name__)
NAME = "influxdb"
ADMIN_USER = "streamad"


def binary_path() -> Path:
    return process.cache_dir() / f"influxdb-{INFLUXDB_VERSION}" / "bin" / "influxd"


def install() -> Path:
    """Build influxd from the Go module proxy, once (about 4 minutes on 2 cores)."""
    binary = binary_path()
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        raise process.StackError("Go is needed to build InfluxDB from the Go module proxy; "
                                 "install it (for example 'apt-get install golang').")
    log.info("building InfluxDB %s from the Go module proxy (once, a few minutes)...",
             INFLUXDB_VERSION)
    process.run_checked(["go", "install", f"{INFLUXDB_MODULE}@{INFLUXDB_VERSION}"],
                        "building InfluxDB", "install-influxdb",
                        env={**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-mod=mod"})
    return binary


def token_path() -> Path:
    return process.state_dir() / "influxdb" / "token"


def _config(host: str, port: int, data_dir: Path) -> str:
    return f"""reporting-disabled = true
bind-address = "{host}:{port + 2}"
[meta]
  dir = "{data_dir}/meta"
[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "{host}:{port}"
  auth-enabled = true
  log-enabled = false
  flux-enabled = true
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""


def start(url: str, database: str) -> bool:
    """Start InfluxDB unless ours runs, make the admin user and the database; True if started."""
    parsed = urllib.parse.urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 8086
    started = False
    if process.running_pid(NAME) is None:
        process.require_free_port(host, port, "STREAMAD__INFLUXDB__URL")
        binary = install()
        home = process.state_dir() / "influxdb"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "influxdb.conf"
        config.write_text(_config(host, port, home))
        process.start_process(NAME, [str(binary), "-config", str(config)])
        process.wait_until(lambda: _ping(url), 60, f"answering {url}/ping", NAME)
        started = True
    _ensure_admin(url)
    query(url, f'CREATE DATABASE "{database}"', method="POST")
    return started


def stop() -> bool:
    return process.stop_process(NAME, timeout_s=30)


def _ping(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
        return response.status == 204


def _ensure_admin(url: str) -> None:
    path = token_path()
    if path.is_file():
        return
    password = secrets.token_urlsafe(24)
    # With no user yet, InfluxDB accepts exactly this statement without credentials.
    query(url, f"CREATE USER {ADMIN_USER} WITH PASSWORD '{password}' WITH ALL PRIVILEGES",
          method="POST", token="")
    process.write_private(path, f"{ADMIN_USER}:{password}\n")


def read_token() -> str:
    return token_path().read_text().strip()


def query(url: str, statement: str, database: str | None = None, method: str = "GET",
          token: str | None = None) -> dict:
    """Run an InfluxQL statement on /query, as Grafana does; returns the decoded JSON."""
    token = read_token() if token is None else token
    params = {"q": statement, "epoch": "ms"}
    if database:
        params["db"] = database
    data = urllib.parse.urlencode(params).encode()
    if method == "GET":
        request = urllib.request.Request(f"{url}/query?{data.decode()}")
    else:
        request = urllib.request.Request(f"{url}/query", data=data, method="POST")
    if token:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(token.encode()).decode())
    with process.open_url(request, 30, "InfluxDB") as response:
        body = json.load(response)
    for result in body.get("results", []):
        if "error" in result:
            raise process.StackError(f"InfluxQL {statement!r} failed: {result['error']}")
    return body
