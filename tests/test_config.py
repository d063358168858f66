"""The configuration object: defaults, environment overrides, and clear rejections."""

from pathlib import Path

import pytest
import yaml

from streamad.config import (DEFAULT_CONFIG_PATH, TOKEN_ENV_VAR, ConfigError, config_from_dict,
                             load_config)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def minimal(**sections) -> dict:
    data = {"schema": {"key_field": "host", "time_field": "ts", "metric_fields": ["cpu"]}}
    data.update(sections)
    return data


def test_default_config_loads_and_matches_smd():
    config = load_config(DEFAULT_CONFIG_PATH, environ={})
    assert config.schema.key_field == "machine"
    assert len(config.schema.metric_fields) == 38
    assert config.window.size_s % config.window.slide_s == 0


def test_environment_overrides_are_parsed_as_yaml(tmp_path):
    path = write(tmp_path, minimal())
    config = load_config(path, environ={"STREAMAD__FLINK__PARALLELISM": "4",
                                        "STREAMAD__KAFKA__EVENTS_TOPIC": "raw-events"})
    assert config.flink.parallelism == 4
    assert config.kafka.events_topic == "raw-events"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = write(tmp_path, minimal(model={"artifact_dir": "artifacts/m1"},
                                   flink={"savepoint_dir": "savepoints", "home": "flink-2.2"}))
    config = load_config(path, environ={})
    assert config.artifact_path == tmp_path / "artifacts" / "m1"
    assert config.flink.savepoint_uri == (tmp_path / "savepoints").as_uri()
    assert config.flink.home == str(tmp_path / "flink-2.2")


@pytest.mark.parametrize("data, fragment", [
    (minimal(kafka={"bootstrap": "x"}), "unknown key(s) ['bootstrap'] in section 'kafka'"),
    ({**minimal(), "sinks": {}}, "unknown section(s) ['sinks']"),
    (minimal(window={"kind": "sliding"}), "window.kind must be one of tumbling, hopping"),
    (minimal(flink={"ship_connector": "no"}), "flink.ship_connector must be true or false"),
    (minimal(window={"size_s": 600, "slide_s": 70}), "whole multiple of window.slide_s"),
    (minimal(window={"size_s": -5}), "window.size_s must be a whole number above 0, got -5"),
    (minimal(kafka={"alerts_topic": "events", "events_topic": "events"}),
     "must be different topics"),
    (minimal(kafka={"bootstrap_servers": "localhost"}), "host:port"),
    ({"schema": {"key_field": "host", "time_field": "ts", "metric_fields": []}},
     "schema.metric_fields is empty"),
    ({"schema": {"key_field": "host", "time_field": "ts", "metric_fields": ["cpu", "cpu"]}},
     "lists 'cpu' twice"),
    ({"schema": {"key_field": "host", "time_field": "ts", "metric_fields": ["cpu-load"]}},
     "letters, digits and '_'"),
    (minimal(schema={"key_field": "h", "time_field": "t", "metric_fields": ["x"],
                     "time_format": "rfc2822"}), "schema.time_format must be one of"),
    (minimal(features={"statistics": ["median"]}), "features.statistics has 'median'"),
    (minimal(model={"target_alert_rate": 2}), "model.target_alert_rate must be a share"),
    (minimal(model={"threshold_method": "median_multiple", "median_multiple": 0.5}),
     "model.median_multiple must be a number above 1"),
    (minimal(model={"kind": "iforest", "threshold_method": "median_multiple"}),
     "the iforest scorer's is not. Use it with pca, robust_z, knn"),
    (minimal(model={"scale_tail_quantile": 99.9}),
     "model.scale_tail_quantile must be a quantile between 0.5 and 1"),
    (minimal(model={"scale_tail_quantile": "high"}),
     "model.scale_tail_quantile must be a quantile between 0.5 and 1"),
    (minimal(model={"cap": "ten"}), "model.cap must be a number of standard deviations"),
    (minimal(model={"explain_with": "shap"}),
     "model.explain_with must be one of rarity, deviation, score, got 'shap'"),
    (minimal(model={"explain_recent_windows": -1}),
     "model.explain_recent_windows must be a whole number of windows (72: the last 6 hours"),
    (minimal(model={"explain_recent_windows": 7.5}), "or 0 to rank metrics without their "
                                                     "recent level, got 7.5"),
    (minimal(influxdb={"url": "influx:8086"}), "influxdb.url must look like http://host:8086"),
    (minimal(kafka={"transaction_timeout_ms": 20000}, flink={"checkpoint_interval_s": 10}),
     "well above flink.checkpoint_interval_s"),
])
def test_impossible_values_are_rejected_with_what_was_given(data, fragment):
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert fragment in str(error.value)


def test_malformed_override_variable_is_named(tmp_path):
    with pytest.raises(ConfigError, match="STREAMAD__PARALLELISM must have the form"):
        load_config(write(tmp_path, minimal()), environ={"STREAMAD__PARALLELISM": "2"})


def test_override_of_an_unknown_key_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="environment variable STREAMAD__MODEL__THRESHOLD "
                                          "names key 'threshold', which section 'model' does "
                                          "not have; allowed: .*'threshold_method'"):
        load_config(write(tmp_path, minimal()), environ={"STREAMAD__MODEL__THRESHOLD": "5"})


def test_missing_file_says_where_to_start(tmp_path):
    with pytest.raises(ConfigError, match="no configuration file at"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_token_comes_from_environment_before_file(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("user:from-file\n")
    config = config_from_dict(minimal(influxdb={"token_file": str(token_file)}))
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)
    assert config.influxdb.read_token() == "user:from-file"
    monkeypatch.setenv(TOKEN_ENV_VAR, "user:from-env")
    assert config.influxdb.read_token() == "user:from-env"


def test_missing_token_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)
    config = config_from_dict(minimal(influxdb={"token_file": str(tmp_path / "absent")}))
    with pytest.raises(ConfigError, match="no such file"):
        config.influxdb.read_token()


def test_token_is_not_part_of_the_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV_VAR, "user:secret-value")
    config = load_config(write(tmp_path, minimal()), environ={})
    assert "secret-value" not in repr(config) and "secret-value" not in str(config.to_dict())


def test_detector_settings_default_to_the_configurations_defaults():
    # DetectorSettings (models/) and ModelConfig each hold the defaults, because the
    # configuration does not import the scoring core until it validates; they must agree.
    from models.detector import DetectorSettings
    from streamad.config import ModelConfig
    assert ModelConfig().detector_settings() == DetectorSettings()


def kafka_login(**kafka) -> dict:
    return minimal(kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "svc",
                          **kafka})


@pytest.mark.parametrize("data, fragment", [
    (minimal(kafka={"security_protocol": "SASL"}), "kafka.security_protocol must be one of"),
    (minimal(kafka={"security_protocol": "SASL_SSL"}), "needs kafka.sasl_username"),
    (kafka_login(sasl_username='a "b"'), "without spaces, quotes or backslashes"),
    (kafka_login(sasl_mechanism="GSSAPI"), "kafka.sasl_mechanism must be one of"),
    (minimal(kafka={"security_protocol": "SSL", "ssl_key_file": "client.key"}),
     "kafka.ssl_certificate_file and kafka.ssl_key_file go together.*got only ssl_key_file"),
    (kafka_login(ssl_certificate_file="c.pem", ssl_key_file="c.key"),
     "kafka.security_protocol is SASL_PLAINTEXT, which does not use TLS"),
])
def test_kafka_logins_are_checked(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(data)


def test_kafka_clients_take_the_password_from_its_file_else_the_environment(
        tmp_path, monkeypatch):
    plain = config_from_dict(minimal()).kafka
    assert plain.client_settings() == {"bootstrap_servers": plain.bootstrap_servers}

    monkeypatch.delenv("STREAMAD_KAFKA_PASSWORD", raising=False)
    from_env = config_from_dict(kafka_login()).kafka
    with pytest.raises(ConfigError, match="set kafka.sasl_password_file to a file that holds "
                                          "it, or STREAMAD_KAFKA_PASSWORD"):
        from_env.client_settings()
    monkeypatch.setenv("STREAMAD_KAFKA_PASSWORD", "from-env")
    assert from_env.client_settings()["sasl_plain_password"] == "from-env"

    password_file = tmp_path / "password"
    password_file.write_text("from-file")  # the file wins: the job's clients read it too
    from_file = config_from_dict(kafka_login(sasl_password_file=str(password_file),
                                             security_protocol="SASL_SSL",
                                             ssl_ca_file=str(tmp_path / "ca.pem"))).kafka
    assert from_file.client_settings() == {
        "bootstrap_servers": from_file.bootstrap_servers, "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN", "sasl_plain_username": "svc",
        "sasl_plain_password": "from-file", "ssl_cafile": str(tmp_path / "ca.pem")}

    password_file.write_text("from-file\n")
    with pytest.raises(ConfigError, match="no line break or space around it"):
        from_file.client_settings()
    password_file.unlink()
    with pytest.raises(ConfigError, match="but there is no such file"):
        from_file.client_settings()


PKCS8_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("key_text, fragment", [
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n",
     "is encrypted.*openssl pkcs8 -topk8 -nocrypt -in KEY -out NEW_KEY.*chmod 600"),
    ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAA==\n"
     "-----END RSA PRIVATE KEY-----\n", "is encrypted"),
    ("-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n",
     "is not in PKCS#8.*convert it: openssl pkcs8 -topk8 -nocrypt"),
    ("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
     "holds no PEM private key"),
])
def test_a_client_key_the_job_cannot_read_is_refused_with_how_to_convert_it(
        tmp_path, key_text, fragment):
    key, certificate = tmp_path / "client.key", tmp_path / "client.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    key.write_text(key_text)
    kafka = config_from_dict(minimal(kafka={
        "security_protocol": "SSL", "ssl_certificate_file": str(certificate),
        "ssl_key_file": str(key)})).kafka
    with pytest.raises(ConfigError, match=f"kafka.ssl_key_file {key} " + fragment):
        kafka.client_settings()
    key.write_text(PKCS8_KEY)
    assert kafka.client_settings() == {
        "bootstrap_servers": kafka.bootstrap_servers, "security_protocol": "SSL",
        "ssl_certfile": str(certificate), "ssl_keyfile": str(key)}
    certificate.unlink()
    with pytest.raises(ConfigError, match="kafka.ssl_certificate_file is .* but there is no "
                                          "such file"):
        kafka.client_settings()
