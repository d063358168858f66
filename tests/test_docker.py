"""docker/ cannot run here (no Docker engine): check it statically against what runs here."""

import json
import re
from pathlib import Path

import yaml

from streamad.config import load_config
from streamad.stack import versions

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"


def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_images_and_jars_match_the_pinned_versions():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"FROM flink:{versions.FLINK_VERSION}-java17" in dockerfile
    assert f"KAFKA_CONNECTOR_VERSION={versions.KAFKA_CONNECTOR_VERSION}" in dockerfile
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{versions.KAFKA_VERSION}"
    assert services["influxdb"]["image"].startswith("influxdb:1.8")


def test_pyproject_pins_the_same_flink():
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    assert f'"apache-flink=={versions.FLINK_VERSION}"' in pyproject


def test_compose_creates_the_topics_of_the_default_config():
    config = load_config(environ={})
    command = " ".join(compose()["services"]["kafka-topics"]["command"])
    for topic in (config.kafka.events_topic, config.kafka.alerts_topic,
                  config.kafka.dead_letter_topic):
        assert topic in command


def test_broker_allows_the_sinks_transaction_timeout():
    config = load_config(environ={})
    broker = compose()["services"]["kafka"]["environment"]
    assert int(broker["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"]) >= config.kafka.transaction_timeout_ms
    assert broker["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1


def test_environment_overrides_name_real_config_keys():
    environment = compose()["x-flink-env"]
    # The commented examples too (the Kafka login settings a user adds).
    commented = re.findall(r"^\s*#\s*(STREAMAD__\w+):", COMPOSE_FILE.read_text(), re.MULTILINE)
    assert len(commented) >= 7
    config = load_config(environ={})
    for name in [*environment, *commented]:
        if name.startswith("STREAMAD__"):
            section, key = name[len("STREAMAD__"):].lower().split("__")
            assert hasattr(getattr(config, section), key), name


def test_no_secret_is_written_into_the_repo():
    text = (DOCKER / "docker-compose.yml").read_text()
    assert "INFLUXDB_ADMIN_PASSWORD:?" in text  # compose refuses to start without one
    assert not (DOCKER / ".env").exists() or ".env" in (DOCKER.parent / ".gitignore").read_text()
    datasource = yaml.safe_load(
        (DOCKER / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    assert datasource["datasources"][0]["secureJsonData"]["password"].startswith("$")


def test_mounted_paths_exist():
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), volume
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()


def test_grafana_provisioning_points_at_the_dashboards():
    provider = yaml.safe_load(
        (DOCKER / "grafana/provisioning/dashboards/streamad.yaml").read_text())["providers"][0]
    assert provider["type"] == "file"
    mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["options"]["path"] + ":ro") for m in mounts)
    dashboard = json.loads((DOCKER / "grafana/dashboards/streamad.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    datasource = yaml.safe_load(
        (DOCKER / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    assert uids == {datasource["datasources"][0]["uid"]}
    measurement = load_config(environ={}).influxdb.measurement
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert f'FROM "{measurement}"' in target["query"], panel["title"]


def test_submit_service_replaces_the_running_job_with_the_images_flink():
    services = compose()["services"]
    command = " ".join(services["submit"]["command"])
    # `flink run` again would start a second job beside the first.
    assert "streamad.cli submit --replace" in command and "flink run" not in command
    assert services["submit"]["depends_on"]["jobmanager"]["condition"] == "service_healthy"
    overrides = {name: str(value) for name, value in compose()["x-flink-env"].items()
                 if name.startswith("STREAMAD__")}
    config = load_config(environ=overrides)
    assert config.flink.home == "/opt/flink" and not config.flink.ship_connector
    # ...which holds only where the image's lib/ has the connector.
    assert "-O /opt/flink/lib/flink-sql-connector-kafka-" in (DOCKER / "Dockerfile").read_text()
