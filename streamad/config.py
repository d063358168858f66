"""The one job configuration: frozen dataclasses, loaded from YAML, validated when built.

Every key of the YAML file maps to a field below; unknown keys are rejected. Any value can
be overridden from the environment with ``STREAMAD__<SECTION>__<FIELD>``, for example
``STREAMAD__KAFKA__BOOTSTRAP_SERVERS=broker:9092``; the value is parsed as YAML, so
``STREAMAD__FLINK__PARALLELISM=4`` is a number. Relative paths are resolved against the
folder of the configuration file. Secrets are never part of this object: the InfluxDB token
comes from ``STREAMAD_INFLUXDB_TOKEN`` or from the file named by ``influxdb.token_file``, the
Kafka password from the file named by ``kafka.sasl_password_file`` or from
``STREAMAD_KAFKA_PASSWORD``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from models.features import STATISTICS

ENV_PREFIX = "STREAMAD__"
TOKEN_ENV_VAR = "STREAMAD_INFLUXDB_TOKEN"
KAFKA_PASSWORD_ENV_VAR = "STREAMAD_KAFKA_PASSWORD"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "jobs" / "default.yaml"

TIME_FORMATS = ("iso8601", "epoch_ms", "epoch_s")
WINDOW_KINDS = ("tumbling", "hopping")
# Flink SQL identifiers we generate must be plain: letters, digits, underscore.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or impossible. The message says how to fix it."""


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "events"
    alerts_topic: str = "alerts"
    dead_letter_topic: str = "events-dead-letter"
    consumer_group: str = "streamad-job"
    # Partitions of the topics that `streamad stack up` creates.
    partitions: int = 2
    # Where the job starts reading when its consumer group has no committed offset.
    start_from: str = "earliest"
    # Must be above the longest checkpoint plus restart time, and at most the broker's
    # transaction.max.timeout.ms (the local stack sets that to 1 hour).
    transaction_timeout_ms: int = 900_000
    # How the job and streamad's own clients connect to the brokers.
    security_protocol: str = "PLAINTEXT"
    # With SASL_PLAINTEXT or SASL_SSL: the mechanism and the user. The password is read from
    # sasl_password_file if set, else from STREAMAD_KAFKA_PASSWORD: on the Flink processes
    # themselves for the job (Kafka's config providers), so that only the file's path or the
    # variable's name is in the job's SQL, which the web UI shows.
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password_file: str | None = None
    # With SSL or SASL_SSL: a PEM file of the CA certificates to trust (a private CA); unset,
    # the system's.
    ssl_ca_file: str | None = None
    # With SSL or SASL_SSL, for brokers that ask for a client certificate (mutual TLS): the
    # client's certificate (PEM, with the chain above it if any) and its private key (PEM,
    # unencrypted PKCS#8, kept private by the file's mode). The job's Kafka clients read both
    # files where they run (Kafka's config providers): only the paths are in its SQL.
    ssl_certificate_file: str | None = None
    ssl_key_file: str | None = None

    def _validate(self) -> None:
        if not re.match(r"^[^\s,]+:\d+(,[^\s,]+:\d+)*$", self.bootstrap_servers):
            raise ConfigError(
                f"kafka.bootstrap_servers must be a comma-separated list of host:port, "
                f"got {self.bootstrap_servers!r}; for example '127.0.0.1:9092'."
            )
        topics = {}
        for name in ("events_topic", "alerts_topic", "dead_letter_topic"):
            topic = getattr(self, name)
            if not isinstance(topic, str) or not _TOPIC_NAME.match(topic):
                raise ConfigError(
                    f"kafka.{name} must be a Kafka topic name (letters, digits, '.', '_', '-'), "
                    f"got {topic!r}."
                )
            if topic in topics:
                raise ConfigError(
                    f"kafka.{name} and kafka.{topics[topic]} are both {topic!r}: the events, "
                    f"alerts and dead-letter topics must be different topics."
                )
            topics[topic] = name
        _require_positive_int("kafka.partitions", self.partitions)
        if self.start_from not in ("earliest", "latest"):
            raise ConfigError(
                f"kafka.start_from must be 'earliest' or 'latest', got {self.start_from!r}."
            )
        _require_positive_int("kafka.transaction_timeout_ms", self.transaction_timeout_ms)
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"kafka.security_protocol must be one of "
                              f"{', '.join(SECURITY_PROTOCOLS)}, got {self.security_protocol!r}.")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"kafka.sasl_mechanism must be one of "
                                  f"{', '.join(SASL_MECHANISMS)}, got {self.sasl_mechanism!r}.")
            if not isinstance(self.sasl_username, str) or not re.match(
                    r'^[^\s"\\]+$', self.sasl_username):
                raise ConfigError(
                    f"kafka.security_protocol {self.security_protocol} needs kafka.sasl_username: "
                    f"the SASL user, without spaces, quotes or backslashes; got "
                    f"{self.sasl_username!r}.")
        if bool(self.ssl_certificate_file) != bool(self.ssl_key_file):
            raise ConfigError(
                f"kafka.ssl_certificate_file and kafka.ssl_key_file go together (the client's "
                f"certificate and its private key, for mutual TLS); got only "
                f"{'ssl_certificate_file' if self.ssl_certificate_file else 'ssl_key_file'}.")
        if self.ssl_certificate_file and not self.uses_ssl:
            raise ConfigError(
                f"kafka.ssl_certificate_file is set, but kafka.security_protocol is "
                f"{self.security_protocol}, which does not use TLS: a client certificate needs "
                f"SSL or SASL_SSL.")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def sasl_password(self) -> str:
        """The SASL password: the content of ``sasl_password_file`` if set, else
        STREAMAD_KAFKA_PASSWORD."""
        if self.sasl_password_file:
            path = Path(self.sasl_password_file)
            if not path.is_file():
                raise ConfigError(
                    f"kafka.sasl_password_file is {self.sasl_password_file!r} but there is no "
                    f"such file; create it, or unset it and set {KAFKA_PASSWORD_ENV_VAR}.")
            password = path.read_text()
            if password != password.strip() or not password:
                # Kafka's Java clients read the file as it is (DirectoryConfigProvider).
                raise ConfigError(
                    f"kafka.sasl_password_file {self.sasl_password_file} must hold the password "
                    f"alone, with no line break or space around it (the job's Kafka clients "
                    f"would take those as part of it): write it with printf '%s', not echo.")
            return password
        password = os.environ.get(KAFKA_PASSWORD_ENV_VAR)
        if not password:
            raise ConfigError(
                f"kafka.security_protocol {self.security_protocol} needs a password: set "
                f"kafka.sasl_password_file to a file that holds it, or {KAFKA_PASSWORD_ENV_VAR}.")
        return password

    @property
    def uses_client_certificate(self) -> bool:
        return bool(self.ssl_certificate_file)

    def check_client_key(self) -> None:
        """Refuse a private key file the job's Kafka clients cannot read (they take PEM
        PKCS#8 without a passphrase), saying how to convert it; the files must exist."""
        for name in ("ssl_certificate_file", "ssl_key_file"):
            if not Path(getattr(self, name)).is_file():
                raise ConfigError(f"kafka.{name} is {getattr(self, name)!r} but there is no "
                                  f"such file.")
        text = Path(self.ssl_key_file).read_text(errors="replace")
        if "-----BEGIN PRIVATE KEY-----" in text:
            return
        if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "ENCRYPTED" in text:
            problem, fix = ("is encrypted, and streamad has no way to pass its passphrase",
                            "decrypt it: openssl pkcs8 -topk8 -nocrypt -in KEY -out NEW_KEY "
                            "(it asks for the passphrase), then chmod 600 NEW_KEY")
        elif "PRIVATE KEY-----" in text:
            problem, fix = ("is not in PKCS#8 (it says BEGIN RSA or EC PRIVATE KEY), the only "
                            "PEM format Kafka's Java clients read",
                            "convert it: openssl pkcs8 -topk8 -nocrypt -in KEY -out NEW_KEY")
        else:
            problem, fix = ("holds no PEM private key (no -----BEGIN PRIVATE KEY----- line)",
                            "point it at the key of kafka.ssl_certificate_file, in PEM")
        raise ConfigError(f"kafka.ssl_key_file {self.ssl_key_file} {problem}; {fix}.")

    def client_settings(self) -> dict[str, Any]:
        """kafka-python's keyword arguments to connect: the brokers, and the protocol with
        its credentials and CA file when they are set."""
        settings: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.security_protocol == "PLAINTEXT":
            return settings
        settings["security_protocol"] = self.security_protocol
        if self.uses_sasl:
            settings.update(sasl_mechanism=self.sasl_mechanism,
                            sasl_plain_username=self.sasl_username,
                            sasl_plain_password=self.sasl_password())
        if self.uses_ssl and self.ssl_ca_file:
            settings["ssl_cafile"] = self.ssl_ca_file
        if self.uses_client_certificate:
            self.check_client_key()
            settings.update(ssl_certfile=self.ssl_certificate_file,
                            ssl_keyfile=self.ssl_key_file)
        return settings


@dataclass(frozen=True)
class SchemaConfig:
    key_field: str = "key"
    time_field: str = "timestamp"
    time_format: str = "iso8601"
    metric_fields: tuple[str, ...] = ()

    def _validate(self) -> None:
        for name in ("key_field", "time_field"):
            _require_field_name(f"schema.{name}", getattr(self, name))
        if self.time_format not in TIME_FORMATS:
            raise ConfigError(
                f"schema.time_format must be one of {', '.join(TIME_FORMATS)}, "
                f"got {self.time_format!r}."
            )
        if not self.metric_fields:
            raise ConfigError(
                "schema.metric_fields is empty: list the numeric fields of an event to build "
                "features from, for example [cpu, memory]."
            )
        seen = set()
        for metric in self.metric_fields:
            _require_field_name("schema.metric_fields", metric)
            if metric in seen:
                raise ConfigError(f"schema.metric_fields lists {metric!r} twice.")
            if metric in (self.key_field, self.time_field):
                raise ConfigError(
                    f"schema.metric_fields contains {metric!r}, which is also the key or time "
                    f"field; a metric must be another field."
                )
            seen.add(metric)


@dataclass(frozen=True)
class WindowConfig:
    kind: str = "hopping"
    size_s: int = 600
    slide_s: int = 60
    max_out_of_orderness_s: int = 30
    idle_timeout_s: int = 30

    def _validate(self) -> None:
        if self.kind not in WINDOW_KINDS:
            raise ConfigError(
                f"window.kind must be one of {', '.join(WINDOW_KINDS)}, got {self.kind!r}."
            )
        _require_positive_int("window.size_s", self.size_s)
        _require_positive_int("window.slide_s", self.slide_s)
        if self.kind == "hopping":
            if self.slide_s > self.size_s or self.size_s % self.slide_s:
                raise ConfigError(
                    f"window.size_s ({self.size_s}) must be a whole multiple of window.slide_s "
                    f"({self.slide_s}) for hopping windows; for example size_s 600 with "
                    f"slide_s 60."
                )
        _require_non_negative_int("window.max_out_of_orderness_s", self.max_out_of_orderness_s)
        _require_positive_int("window.idle_timeout_s", self.idle_timeout_s)

    @property
    def effective_slide_s(self) -> int:
        """Distance between window starts; a tumbling window slides by its size."""
        return self.slide_s if self.kind == "hopping" else self.size_s


@dataclass(frozen=True)
class FeaturesConfig:
    statistics: tuple[str, ...] = STATISTICS
    # The event count of the window is a feature too (a silent or chatty key is news).
    include_count: bool = True

    def _validate(self) -> None:
        if not self.statistics:
            raise ConfigError(
                f"features.statistics is empty; choose from {', '.join(STATISTICS)}."
            )
        for stat in self.statistics:
            if stat not in STATISTICS:
                raise ConfigError(
                    f"features.statistics has {stat!r}; allowed: {', '.join(STATISTICS)}."
                )
        if len(set(self.statistics)) != len(self.statistics):
            raise ConfigError(f"features.statistics repeats a statistic: {list(self.statistics)}.")


@dataclass(frozen=True)
class ModelConfig:
    artifact_dir: str = "models/artifacts/default"
    # The scorer: iforest, pca (reconstruction error), robust_z (windowed Gaussian) or knn.
    kind: str = "iforest"
    # pooled: one model over all keys' per-key-normalized features; per_key: one per key.
    baseline: str = "pooled"
    # Scaled features (in standard deviations of the key's own normal) are clipped here, so
    # one metric far outside its training range adds a bounded amount to a score.
    cap: float = 10.0
    # A feature's scale is its standard deviation, or, where its tail is heavier than a
    # normal distribution's, the spread its scale_tail_quantile quantile of absolute
    # deviations implies (models/scaling.py), so a spike seen now and then in training is not
    # dozens of deviations out when it recurs. null: the standard deviation alone.
    scale_tail_quantile: float | None = 0.999
    # quantile: the (1 - target_alert_rate) quantile of each key's training scores;
    # pot: the peaks-over-threshold tail fit's score with tail probability pot_risk;
    # median_multiple: median_multiple times the median of each key's training scores (not
    # with iforest; see models/threshold.py for why it resists incidents in the training data).
    threshold_method: str = "quantile"
    target_alert_rate: float = 0.01
    pot_risk: float = 0.001
    median_multiple: float = 50.0
    n_estimators: int = 200
    pca_variance: float = 0.9
    n_neighbors: int = 5
    random_state: int = 0
    # Metrics named in each alert's explanation.
    explain_top: int = 5
    # How the explanation ranks metrics: rarity (how rare each metric's distance from the
    # key's normal is for the key), deviation (that distance in the key's standard
    # deviations) or score (the scorer's own contributions, for PCA its squared residuals).
    # See models/detector.py.
    explain_with: str = "rarity"
    # With rarity, also how rare each metric's move is from its own recent level, its mean
    # over the key's last this many windows (72: 6 hours at a 5-minute slide), so a metric
    # that just moved outranks one that has sat as far out for days (jobs/default.yaml: 72).
    # 0: not weighed. The job keeps each key's last windows in its state for it
    # (jobs/sql.py).
    explain_recent_windows: int = 0

    def _validate(self) -> None:
        from models.detector import BASELINES, EXPLANATIONS
        from models.scorers import SCORERS
        from models.threshold import THRESHOLD_METHODS
        if not isinstance(self.artifact_dir, str) or not self.artifact_dir:
            raise ConfigError("model.artifact_dir must be a folder path.")
        for name, allowed in (("kind", SCORERS), ("baseline", BASELINES),
                              ("threshold_method", THRESHOLD_METHODS),
                              ("explain_with", EXPLANATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"model.{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}.")
        if not (isinstance(self.target_alert_rate, (int, float))
                and 0 < self.target_alert_rate < 0.5):
            raise ConfigError(
                f"model.target_alert_rate must be a share between 0 and 0.5 (0.01 means about "
                f"1% of normal windows alert), got {self.target_alert_rate!r}.")
        if not (isinstance(self.pot_risk, (int, float)) and 0 < self.pot_risk < 0.02):
            raise ConfigError(
                f"model.pot_risk must be a probability between 0 and 0.02 (0.001 means one "
                f"normal window in a thousand would alert), got {self.pot_risk!r}.")
        if not (isinstance(self.median_multiple, (int, float)) and self.median_multiple > 1):
            raise ConfigError(
                f"model.median_multiple must be a number above 1 (40 means a window alerts when "
                f"it scores 40 times its key's typical training score), got "
                f"{self.median_multiple!r}.")
        if not (isinstance(self.cap, (int, float)) and self.cap > 0):
            raise ConfigError(f"model.cap must be a number of standard deviations above 0, "
                              f"got {self.cap!r}.")
        from models.scaling import check_tail_quantile
        try:
            check_tail_quantile(self.scale_tail_quantile)
        except ValueError as error:
            raise ConfigError(f"model.scale_tail_quantile {error}") from None
        if not (isinstance(self.pca_variance, (int, float)) and 0 < self.pca_variance < 1):
            raise ConfigError(f"model.pca_variance must be a share of variance between 0 and "
                              f"1, got {self.pca_variance!r}.")
        _require_positive_int("model.n_estimators", self.n_estimators)
        _require_positive_int("model.n_neighbors", self.n_neighbors)
        _require_positive_int("model.explain_top", self.explain_top)
        _require_non_negative_int(
            "model.explain_recent_windows", self.explain_recent_windows,
            what="a whole number of windows (72: the last 6 hours at a 5-minute slide), or 0 "
                 "to rank metrics without their recent level")
        # Last: building the detector's settings converts the numbers checked above.
        from models.detector import check_threshold_fits_scorer
        try:
            check_threshold_fits_scorer(self.detector_settings().threshold_rule, self.kind)
        except ValueError as error:
            raise ConfigError(f"model.threshold_method: {error}") from None

    def detector_settings(self):
        from models.detector import DetectorSettings
        return DetectorSettings(
            kind=self.kind, baseline=self.baseline, cap=float(self.cap),
            scale_tail_quantile=(None if self.scale_tail_quantile is None
                                 else float(self.scale_tail_quantile)),
            threshold_method=self.threshold_method,
            target_alert_rate=float(self.target_alert_rate), pot_risk=float(self.pot_risk),
            median_multiple=float(self.median_multiple),
            n_estimators=self.n_estimators, pca_variance=float(self.pca_variance),
            n_neighbors=self.n_neighbors, random_state=self.random_state,
            explain_top=self.explain_top, explain_with=self.explain_with,
            explain_recent_windows=self.explain_recent_windows)


@dataclass(frozen=True)
class AlertsConfig:
    """The alert policy: anomalous windows of a key -> one alert per incident."""
    # An incident opens after this many consecutive anomalous windows of a key...
    open_after_windows: int = 2
    # ...and ends after this many consecutive normal ones.
    close_after_windows: int = 3
    # A metric out of its training range in this many windows of one run has drifted (288
    # windows sliding by 5 minutes: one day); the run ends after this many in range.
    drift_after_windows: int = 288
    drift_clear_after_windows: int = 12

    def _validate(self) -> None:
        for name in ("open_after_windows", "close_after_windows", "drift_after_windows",
                     "drift_clear_after_windows"):
            _require_positive_int(f"alerts.{name}", getattr(self, name))

    def policy(self, window: "WindowConfig"):
        """The incident policy for windows of this shape: a key's first windows that can
        begin before its first event (size / slide of them) open no incident."""
        from models.incidents import IncidentPolicy
        warmup = -(-window.size_s // window.effective_slide_s)
        return IncidentPolicy(self.open_after_windows, self.close_after_windows, warmup)

    def drift_policy(self):
        from models.drift import DriftPolicy
        return DriftPolicy(self.drift_after_windows, self.drift_clear_after_windows)


@dataclass(frozen=True)
class InfluxDBConfig:
    url: str = "http://127.0.0.1:8086"
    org: str = "-"
    # On InfluxDB 1.8+ the bucket is "database/retention_policy".
    bucket: str = "streamad/autogen"
    measurement: str = "window_scores"
    token_file: str | None = None
    write_timeout_ms: int = 30_000

    def _validate(self) -> None:
        if not re.match(r"^https?://[^\s/]+(:\d+)?/?$", self.url or ""):
            raise ConfigError(
                f"influxdb.url must look like http://host:8086, got {self.url!r}."
            )
        for name in ("org", "bucket", "measurement"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"influxdb.{name} must be a non-empty string, got {value!r}.")
        _require_positive_int("influxdb.write_timeout_ms", self.write_timeout_ms)

    @property
    def database(self) -> str:
        """The InfluxDB 1.x database (the bucket's part before '/'), for InfluxQL queries."""
        return self.bucket.split("/", 1)[0]

    def read_token(self) -> str:
        """The token: from the environment, else ``token_file``, else the local stack's file.

        With none of them, ':' (InfluxDB 1.8 without authentication).
        """
        token = os.environ.get(TOKEN_ENV_VAR)
        if token:
            return token
        if self.token_file:
            path = Path(self.token_file)
            if not path.is_file():
                raise ConfigError(
                    f"influxdb.token_file is {self.token_file!r} but there is no such file; "
                    f"create it, or set {TOKEN_ENV_VAR} instead.")
            return path.read_text().strip()
        # The credentials file `streamad stack up` writes (streamad/stack/influxdb.py).
        local_stack = Path(os.environ.get("STREAMAD_STATE_DIR", "~/.local/state/streamad")
                           ).expanduser() / "influxdb" / "token"
        if local_stack.is_file():
            return local_stack.read_text().strip()
        return ":"


@dataclass(frozen=True)
class FlinkConfig:
    rest_url: str = "http://127.0.0.1:8081"
    parallelism: int = 2
    checkpoint_interval_s: int = 10
    checkpoint_dir: str = "~/.local/state/streamad/checkpoints"
    # Where 'streamad submit --replace' has the running job stop with a savepoint, which the
    # new job starts from; like checkpoint_dir, a folder every Flink process can reach.
    savepoint_dir: str = "~/.local/state/streamad/savepoints"
    job_name: str = "streamad-anomaly-detection"
    # The Flink distribution whose bin/flink submits the job: a cluster's own (docker/ sets
    # /opt/flink, the image's), at the Flink version streamad pins. Empty: the apache-flink
    # wheel's, the one the local stack runs.
    home: str = ""
    # Ship the Kafka connector jar with the job (pipeline.jars, fetched with Maven once).
    # False where the cluster's lib/ holds it already, as docker/Dockerfile puts it there: the
    # submitter then needs neither Maven nor the download. A SCRAM login needs it in lib/
    # (see the README's Kafka login section).
    ship_connector: bool = True
    # Python bundles: rows handed to the Python worker together (and arrow batch size).
    python_bundle_size: int = 1000
    python_bundle_time_ms: int = 1000
    restart_attempts: int = 10
    restart_delay_s: int = 5

    def _validate(self) -> None:
        _require_positive_int("flink.parallelism", self.parallelism)
        _require_positive_int("flink.checkpoint_interval_s", self.checkpoint_interval_s)
        _require_positive_int("flink.python_bundle_size", self.python_bundle_size)
        _require_positive_int("flink.python_bundle_time_ms", self.python_bundle_time_ms)
        _require_non_negative_int("flink.restart_attempts", self.restart_attempts)
        _require_non_negative_int("flink.restart_delay_s", self.restart_delay_s)
        for name in ("checkpoint_dir", "savepoint_dir"):
            if not getattr(self, name):
                raise ConfigError(f"flink.{name} must be a folder path or URI.")
        if not isinstance(self.ship_connector, bool):
            raise ConfigError(f"flink.ship_connector must be true or false, got "
                              f"{self.ship_connector!r}.")
        if not isinstance(self.home, str):
            raise ConfigError(f"flink.home must be the path of a Flink distribution (the folder "
                              f"with bin/flink) or empty, got {self.home!r}.")

    @property
    def checkpoint_uri(self) -> str:
        return _folder_uri(self.checkpoint_dir)

    @property
    def savepoint_uri(self) -> str:
        return _folder_uri(self.savepoint_dir)


def _folder_uri(folder: str) -> str:
    """A folder as Flink takes it: a URI as given, a path as a file: URI."""
    if "://" in folder:
        return folder
    return Path(folder).expanduser().resolve().as_uri()


@dataclass(frozen=True)
class JobConfig:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    influxdb: InfluxDBConfig = field(default_factory=InfluxDBConfig)
    flink: FlinkConfig = field(default_factory=FlinkConfig)
    # Where the file came from, for messages; not a YAML key.
    source: str = field(default="<defaults>", compare=False)

    def __post_init__(self) -> None:
        for section in _SECTIONS:
            getattr(self, section)._validate()
        timeout_s = self.kafka.transaction_timeout_ms / 1000
        if timeout_s <= 3 * self.flink.checkpoint_interval_s:
            raise ConfigError(
                f"kafka.transaction_timeout_ms ({self.kafka.transaction_timeout_ms}) must be well "
                f"above flink.checkpoint_interval_s ({self.flink.checkpoint_interval_s} s): a "
                f"transaction stays open from one checkpoint to the next, plus restart time."
            )

    @property
    def artifact_path(self) -> Path:
        return Path(self.model.artifact_dir).expanduser()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


_SECTIONS = {
    "kafka": KafkaConfig,
    "schema": SchemaConfig,
    "window": WindowConfig,
    "features": FeaturesConfig,
    "model": ModelConfig,
    "alerts": AlertsConfig,
    "influxdb": InfluxDBConfig,
    "flink": FlinkConfig,
}


def load_config(path: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None) -> JobConfig:
    """Read, override from the environment, and validate a job configuration.

    >>> config = load_config(DEFAULT_CONFIG_PATH, environ={"STREAMAD__FLINK__PARALLELISM": "1"})
    >>> config.flink.parallelism, config.window.kind
    (1, 'hopping')
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}; pass --config with an existing "
                          f"file, or start from {DEFAULT_CONFIG_PATH}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}.")
    _apply_env_overrides(raw, environ)
    return config_from_dict(raw, base_dir=path.resolve().parent, source=str(path))


def config_from_dict(raw: Mapping[str, Any], base_dir: Path | None = None,
                     source: str = "<dict>") -> JobConfig:
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS)}."
        )
    sections = {}
    for name, cls in _SECTIONS.items():
        values = dict(raw.get(name) or {})
        if not isinstance(raw.get(name, {}) or {}, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping.")
        allowed = {f.name for f in fields(cls)}
        bad = set(values) - allowed
        if bad:
            raise ConfigError(
                f"{source}: unknown key(s) {sorted(bad)} in section {name!r}; "
                f"allowed: {sorted(allowed)}."
            )
        for key, value in list(values.items()):
            if isinstance(value, list):
                values[key] = tuple(value)
        if base_dir is not None:
            _resolve_paths(name, values, base_dir)
        try:
            sections[name] = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{source}: section {name!r}: {exc}") from None
    return JobConfig(**sections, source=source)


def _resolve_paths(section: str, values: dict, base_dir: Path) -> None:
    path_keys = {"model": ("artifact_dir",), "influxdb": ("token_file",),
                 "kafka": ("sasl_password_file", "ssl_ca_file", "ssl_certificate_file",
                           "ssl_key_file"),
                 "flink": ("checkpoint_dir", "savepoint_dir", "home")}.get(section, ())
    for key in path_keys:
        value = values.get(key)
        if isinstance(value, str) and value and "://" not in value:
            expanded = Path(value).expanduser()
            values[key] = str(expanded if expanded.is_absolute() else (base_dir / expanded).resolve())


def _apply_env_overrides(raw: dict, environ: Mapping[str, str]) -> None:
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name} must have the form "
                f"{ENV_PREFIX}<SECTION>__<KEY>, for example {ENV_PREFIX}FLINK__PARALLELISM."
            )
        section, key = parts
        if section not in _SECTIONS:
            raise ConfigError(
                f"environment variable {name} names section {section!r}; "
                f"allowed: {sorted(_SECTIONS)}."
            )
        allowed = sorted(f.name for f in fields(_SECTIONS[section]))
        if key not in allowed:
            raise ConfigError(
                f"environment variable {name} names key {key!r}, which section {section!r} "
                f"does not have; allowed: {allowed}."
            )
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        raw[section][key] = yaml.safe_load(text) if text != "" else None


def _require_field_name(where: str, value: Any) -> None:
    if not isinstance(value, str) or not _FIELD_NAME.match(value):
        raise ConfigError(
            f"{where} must be a field name of letters, digits and '_' (not starting with a "
            f"digit), got {value!r}."
        )


def _require_positive_int(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a whole number above 0, got {value!r}.")


def _require_non_negative_int(where: str, value: Any,
                              what: str = "a whole number of 0 or more") -> None:
    """`what` says what the setting must be, for the error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where} must be {what}, got {value!r}.")


__all__ = ["JobConfig", "ConfigError", "load_config", "config_from_dict", "TOKEN_ENV_VAR",
           "KAFKA_PASSWORD_ENV_VAR",
           "DEFAULT_CONFIG_PATH"]
