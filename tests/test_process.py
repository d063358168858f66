"""Stack processes are started, found and stopped by their PID files: real processes here."""

import http.server
import os
import socket
import sys
import threading
import urllib.error
import urllib.request

import pytest

from streamad.stack import process


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMAD_STATE_DIR", str(tmp_path))
    return tmp_path


def test_started_process_is_found_and_stopped(state):
    pid = process.start_process("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert process.running_pid("sleeper") == pid
    assert process.stop_process("sleeper", timeout_s=10) is True
    assert process.running_pid("sleeper") is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stopping_a_server_stops_what_it_started(state):
    # As a TaskManager starts its Python workers: a child that outlives a SIGTERM to its parent.
    code = ("import subprocess, sys, time; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(child.pid, flush=True); time.sleep(60)")
    process.start_process("parent", [sys.executable, "-c", code])
    log = state / "logs" / "parent.out"
    process.wait_until(lambda: log.read_text().strip() != "", 10, "the child's PID", "parent")
    child = int(log.read_text().split()[0])
    assert process.stop_process("parent", timeout_s=10) is True
    import time
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process._alive(child):
        time.sleep(0.1)
    assert not process._alive(child)


def test_a_process_that_ignores_sigterm_is_killed(state):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    process.start_process("stubborn", [sys.executable, "-c", code])
    import time
    time.sleep(0.5)  # let it install its handler
    assert process.stop_process("stubborn", timeout_s=1) is True
    assert process.running_pid("stubborn") is None


def test_stop_leaves_alone_what_it_did_not_start(state):
    assert process.stop_process("never-started") is False
    # A stale PID file (the process is gone) is not a running server.
    process.pid_file("gone").write_text("999999")
    assert process.running_pid("gone") is None


def test_a_server_that_dies_while_starting_is_reported_with_its_log(state):
    process.start_process("crasher", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"])
    with pytest.raises(process.StackError, match="crasher exited while waiting for .*crasher.out"):
        process.wait_until(lambda: False, 10, "being ready", "crasher")
    assert "bad config" in (state / "logs" / "crasher.out").read_text()


def test_failed_install_step_shows_the_end_of_its_log(state):
    with pytest.raises(process.StackError, match=r"downloading things failed \(exit 2\)"):
        process.run_checked([sys.executable, "-c", "import sys; print('404'); sys.exit(2)"],
                            "downloading things", "install-things")


def test_a_port_in_use_by_someone_else_is_refused_with_the_setting_to_change():
    import socket
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(process.StackError, match=f"127.0.0.1:{port}.*STREAMAD__X__Y"):
            process.require_free_port("127.0.0.1", port, "STREAMAD__X__Y")


def test_kraft_cluster_ids_never_look_like_options():
    from streamad.stack.kafka import _random_cluster_id
    ids = {_random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)


def test_a_server_that_does_not_answer_is_named_with_where_to_look(state):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"http://127.0.0.1:{silent.getsockname()[1]}/query"
        with pytest.raises(process.StackError) as raised:
            process.open_url(urllib.request.Request(f"{address}?q=SHOW+DATABASES"), 0.5,
                             "InfluxDB")
    message = str(raised.value)
    assert message.startswith(f"InfluxDB did not answer GET {address} (")
    assert "timed out" in message and str(state / "logs") in message


def test_an_http_error_status_is_raised_as_the_server_gave_it(state):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404, "no such job")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jobs/x"
        with pytest.raises(urllib.error.HTTPError) as raised:
            process.open_url(urllib.request.Request(url), 5, "Flink's REST API")
        assert raised.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("protocol, port, plain_port", [
    ("PLAINTEXT", 9092, 9092), ("SASL_PLAINTEXT", 9094, 9092), ("SASL_SSL", 9095, 9092),
    ("SSL", 9096, 9092), ("SASL_SSL", 19095, 19092)])
def test_a_configuration_with_a_login_finds_the_local_brokers_plain_port(protocol, port,
                                                                        plain_port):
    from streamad.config import load_config
    from streamad.stack import kafka, kafka_address
    config = load_config(environ={"STREAMAD__KAFKA__BOOTSTRAP_SERVERS": f"localhost:{port}",
                                  "STREAMAD__KAFKA__SECURITY_PROTOCOL": protocol,
                                  "STREAMAD__KAFKA__SASL_USERNAME": kafka.SASL_USER})
    assert kafka_address(config) == ("localhost", plain_port)
    if protocol != "PLAINTEXT":  # and the listener it names is that protocol's
        assert kafka.login_listeners("localhost", plain_port)[protocol] == ("localhost", port)

