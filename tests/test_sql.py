"""The job's SQL, checked in a local Flink (no servers): it must agree with the Python core."""

import json

import pytest

from jobs import sql
from streamad.config import ConfigError, config_from_dict
from streamad.events import parse_time_ms

pyflink = pytest.importorskip("pyflink")


def config_for(time_format: str):
    return config_from_dict({"schema": {"key_field": "k", "time_field": "ts",
                                        "time_format": time_format, "metric_fields": ["x"]}})


@pytest.fixture(scope="module")
def table_env():
    from pyflink.table import EnvironmentSettings, TableEnvironment
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("table.local-time-zone", "UTC")
    t_env.get_config().set("parallelism.default", "1")
    return t_env


@pytest.mark.parametrize("time_format, values", [
    ("iso8601", ['"2024-01-01T00:01:00Z"', '"2024-01-01T00:01:00.250Z"',
                 '"2024-01-01T00:01:00+02:00"', '"2024-01-01 00:01:00"', '"soon"', "17",
                 '"2024-02-30T00:00:00Z"']),
    ("epoch_ms", ["1704067260250", '"1704067260250"', "1.5", '"x"']),
    ("epoch_s", ["1704067260", '"abc"']),
])
def test_sql_time_parsing_agrees_with_python(table_env, time_format, values):
    import json
    config = config_for(time_format)
    expression = sql.event_time_expression(config)
    rows = ", ".join(f"({sql.literal('{' + chr(34) + 'ts' + chr(34) + ': ' + v + '}')})"
                     for v in values)
    query = (f"SELECT payload, CAST(EXTRACT(EPOCH FROM parsed) AS BIGINT) * 1000 "
             f"+ EXTRACT(MILLISECOND FROM parsed) "
             f"FROM (SELECT payload, {expression} AS parsed FROM (VALUES {rows}) AS t(payload))")
    with table_env.execute_sql(query).collect() as results:
        got = {row[0]: row[1] for row in results}
    for value in values:
        payload = '{"ts": ' + value + '}'
        expected = parse_time_ms(json.loads(value), time_format)
        assert got[payload] == expected, f"{time_format} {value}: SQL {got[payload]}, Python {expected}"


def test_interval_literals_cover_long_windows():
    assert sql.seconds(600) == "INTERVAL '0 00:10:00' DAY TO SECOND"
    assert sql.seconds(86_400 * 2 + 1) == "INTERVAL '2 00:00:01' DAY TO SECOND"


@pytest.mark.parametrize("kind, expected, recent_windows", [
    ("tumbling", "TUMBLE(", 0), ("hopping", "HOP(", 0), ("hopping", "HOP(", 72)])
def test_job_plans_with_either_window_kind(kind, expected, recent_windows):
    from jobs.anomaly_job import build_job, create_environment
    from streamad.stack.flink import connector_jar
    config = config_from_dict({
        "schema": {"key_field": "k", "time_field": "ts", "metric_fields": ["x", "y"]},
        "window": {"kind": kind, "size_s": 600, "slide_s": 120},
        "model": {"explain_recent_windows": recent_windows}})
    env, t_env = create_environment(config, str(connector_jar()))
    statements = build_job(t_env, config)
    statements.attach_as_datastream()
    # The whole job's graph: the SQL sinks and the DataStream alert policy together.
    nodes = [node["contents"] for node in json.loads(env.get_execution_plan())["nodes"]]
    assert any(expected in node for node in nodes)
    # The recent levels: an OVER aggregation of each key's last windows, only when asked.
    assert any("OverAggregate" in node for node in nodes) == bool(recent_windows)
    # The topic is read once, and each Python UDF runs once per row, however many sinks
    # read its result.
    assert sum("TableSourceScan(table=[[default_catalog, default_database, events_raw" in node
               for node in nodes) == 1
    for udf in (sql.PARSE_UDF, sql.SCORE_UDF, sql.WRITE_UDF):
        assert sum(f"{udf}(" in node for node in nodes) == 1, udf


def test_recent_levels_in_sql_agree_with_the_offline_ones(table_env):
    # Each key's windows out of order and interleaved with another key's, one with several
    # events: the level is the mean of the window means before, not of the events.
    import numpy as np
    import pandas as pd
    from models.features import recent_levels
    rng = np.random.default_rng(3)
    windows = pd.DataFrame({"event_key": np.repeat(["a", "b"], 8),
                            "window_start_ms": np.tile(np.arange(8) * 300_000, 2),
                            "event_count": rng.integers(1, 5, 16).astype(float),
                            "x__sum": rng.normal(50.0, 20.0, 16)}).sample(frac=1, random_state=1)
    config = config_from_dict({"schema": {"key_field": "event_key", "time_field": "ts",
                                          "metric_fields": ["x"]}})
    rows = ", ".join(f"({sql.literal(r.event_key)}, TO_TIMESTAMP_LTZ({r.window_start_ms}, 3), "
                     f"CAST({r.event_count!r} AS DOUBLE), CAST({r.x__sum!r} AS DOUBLE))"
                     for r in windows.itertuples())
    table_env.create_temporary_view("window_aggregates", table_env.sql_query(
        f"SELECT * FROM (VALUES {rows}) AS t(event_key, window_time, event_count, x__sum)"))
    query = (f"SELECT event_key, CAST(EXTRACT(EPOCH FROM window_time) AS BIGINT) * 1000, "
             f"x__recent_level FROM ({sql.windows_with_levels_query(config, windows=3)})")
    with table_env.execute_sql(query).collect() as results:
        got = {(row[0], row[1]): row[2] for row in results}
    expected = recent_levels(windows, "event_key", ["x"], windows=3)["x__recent_level"]
    assert len(got) == len(windows)
    for row, level in zip(windows.itertuples(), expected):
        assert got[(row.event_key, row.window_start_ms)] == pytest.approx(level, rel=1e-12)
    # The first window of each key takes its own mean; the fifth, the mean of the 3 before.
    first = windows[(windows.event_key == "a") & (windows.window_start_ms == 0)].iloc[0]
    assert got[("a", 0)] == pytest.approx(first.x__sum / first.event_count)
    a = windows[windows.event_key == "a"].sort_values("window_start_ms")
    means = (a.x__sum / a.event_count).to_numpy()
    assert got[("a", 4 * 300_000)] == pytest.approx(means[1:4].mean())


def with_kafka(**kafka):
    return config_from_dict({"schema": {"key_field": "k", "time_field": "ts",
                                        "metric_fields": ["x"]}, "kafka": kafka})


def test_plain_kafka_needs_no_security_settings():
    settings = sql._kafka_common(with_kafka())
    assert not [key for key in settings if "security" in key or "sasl" in key]


def test_the_sasl_password_is_named_in_the_sql_never_written_there(tmp_path, monkeypatch):
    password_file = tmp_path / "kafka-password"
    password_file.write_text("s3cret-from-file")
    monkeypatch.setenv("STREAMAD_KAFKA_PASSWORD", "s3cret-from-env")
    from_file = with_kafka(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="svc", sasl_password_file=str(password_file),
                           ssl_ca_file=str(tmp_path / "ca.pem"))
    settings = sql._kafka_common(from_file)
    assert settings["properties.security.protocol"] == "SASL_SSL"
    assert settings["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings["properties.sasl.jaas.config"] == (
        f'{sql.SHADED_KAFKA}.common.security.scram.ScramLoginModule required username="svc" '
        f'password="${{streamad_file:{tmp_path}:kafka-password}}";')
    assert settings["properties.config.providers"] == "streamad_file"
    assert settings["properties.config.providers.streamad_file.class"].endswith(
        ".DirectoryConfigProvider")
    assert settings["properties.ssl.truststore.location"] == str(tmp_path / "ca.pem")
    from_env = sql._kafka_common(with_kafka(security_protocol="SASL_PLAINTEXT",
                                            sasl_username="svc"))
    assert 'password="${streamad_env:STREAMAD_KAFKA_PASSWORD}"' in from_env[
        "properties.sasl.jaas.config"]
    assert from_env["properties.config.providers"] == "streamad_env"
    assert from_env["properties.config.providers.streamad_env.class"].endswith(
        ".EnvVarConfigProvider")
    assert "ssl.truststore.location" not in str(from_env)
    # Every Kafka table of the job carries the login, and no SQL holds a password.
    options = sql.RunOptions()
    for config in (from_file, with_kafka(security_protocol="SASL_PLAINTEXT",
                                         sasl_username="svc")):
        for ddl in (sql.source_ddl(config, options), sql.dead_letter_ddl(config),
                    sql.alerts_ddl(config)):
            assert "'properties.sasl.jaas.config'" in ddl
            assert "s3cret" not in ddl


def test_the_client_key_is_named_in_the_sql_never_written_there(tmp_path, monkeypatch):
    key, certificate = tmp_path / "client.key", tmp_path / "client.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n")
    certificate.write_text("-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("STREAMAD_KAFKA_PASSWORD", "s3cret-from-env")
    config = with_kafka(security_protocol="SASL_SSL", sasl_username="svc",
                        ssl_certificate_file=str(certificate), ssl_key_file=str(key))
    settings = sql._kafka_common(config)
    assert settings["properties.ssl.keystore.type"] == "PEM"
    assert settings["properties.ssl.keystore.key"] == f"${{streamad_file:{tmp_path}:client.key}}"
    assert settings["properties.ssl.keystore.certificate.chain"] == (
        f"${{streamad_file:{tmp_path}:client.pem}}")
    # The password from the environment and the key from a file: both providers.
    assert settings["properties.config.providers"] == "streamad_env,streamad_file"
    assert settings["properties.config.providers.streamad_file.class"].endswith(
        ".DirectoryConfigProvider")
    for ddl in (sql.source_ddl(config, sql.RunOptions()), sql.alerts_ddl(config)):
        assert "'properties.ssl.keystore.key'" in ddl
        assert "c2VjcmV0LWtleQ" not in ddl and "s3cret" not in ddl
    # A key the Java clients cannot read is refused when the SQL is made, where it is seen.
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="is not in PKCS#8.*openssl pkcs8 -topk8 -nocrypt"):
        sql._kafka_common(config)
    # Where the key is only on the Flink processes, the SQL names it all the same.
    elsewhere = with_kafka(security_protocol="SSL", ssl_certificate_file="/run/secrets/c.pem",
                           ssl_key_file="/run/secrets/c.key")
    assert sql._kafka_common(elsewhere)["properties.ssl.keystore.key"] == (
        "${streamad_file:/run/secrets:c.key}")


def test_the_classes_the_sasl_settings_name_are_in_the_connector_jar():
    """flink-sql-connector-kafka relocates the Kafka client: a class named outside
    SHADED_KAFKA would not load, and the job would fail only once it runs."""
    import zipfile

    from streamad.stack import flink
    with zipfile.ZipFile(flink.connector_jar()) as jar:
        classes = set(jar.namelist())
    named = set()
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        for password_file in (None, "/run/secrets/kafka"):
            settings = sql._kafka_common(with_kafka(
                security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_username="svc", sasl_password_file=password_file))
            named.add(settings["properties.sasl.jaas.config"].split(" ", 1)[0])
            alias = settings["properties.config.providers"]
            named.add(settings[f"properties.config.providers.{alias}.class"])
    assert len(named) == 4
    for name in named:
        assert name.replace(".", "/") + ".class" in classes, name
