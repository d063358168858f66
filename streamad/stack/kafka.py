"""A single-node Apache Kafka broker in KRaft mode (broker + controller), from Maven Central."""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import uuid
from pathlib import Path

from streamad.config import SASL_MECHANISMS, KafkaConfig

from . import process
from .versions import KAFKA_VERSION, LOG4J_VERSION

log = logging.getLogger(__name__)
NAME = "kafka"
# Flink's KafkaSink may keep a transaction open for up to its transaction.timeout.ms; the
# broker refuses any longer than this, so it is set well above the job's default.
TRANSACTION_MAX_TIMEOUT_MS = 3_600_000
# Beside the plain listener, three that take a login (`login_listeners`), to try the job's
# Kafka credentials against a real broker: two a SASL login (PLAIN, SCRAM-SHA-256 or
# SCRAM-SHA-512) as this user (kafka.security_protocol SASL_PLAINTEXT or SASL_SSL), and one
# a client certificate signed by the stack's CA (SSL, mutual TLS).
SASL_USER = "streamad"
# Each login listener's port, above the plain one's (the controller's is + 1).
_LOGIN_PORT_OFFSETS = {"SASL_PLAINTEXT": 2, "SASL_SSL": 3, "SSL": 4}

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamad.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
"""


def libs_dir() -> Path:
    return process.cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def install() -> Path:
    """Download the broker's jars with Maven, once; later calls reuse the cache."""
    libs = libs_dir()
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return libs
    if shutil.which("mvn") is None:
        raise process.StackError("Maven (mvn) is needed to download Kafka from Maven Central; "
                                 "install it, for example with 'apt-get install maven'.")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
    log.info("downloading Apache Kafka %s from Maven Central (once)...", KAFKA_VERSION)
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    process.run_checked(
        ["mvn", "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
        "downloading Kafka with Maven", "install-kafka")
    staging.rename(libs)
    return libs


def login_listeners(host: str, port: int) -> dict[str, tuple[str, int]]:
    """The (host, port) of each login listener of the broker whose plain listener is at
    `host`:`port`, by security protocol; the TLS ones' certificate is signed by the CA in
    `tls_ca_file`, and the SSL one takes only clients whose certificate that CA signed
    (`tls_client_files`)."""
    return {protocol: (host, port + offset) for protocol, offset in _LOGIN_PORT_OFFSETS.items()}


def plain_port_of(protocol: str, port: int) -> int:
    """The port of the plain listener of the broker whose `protocol` listener is at `port`."""
    return port - _LOGIN_PORT_OFFSETS.get(protocol, 0)


def sasl_password_file() -> Path:
    """The password of SASL_USER on the SASL listener, made on the broker's first start:
    what kafka.sasl_password_file names to connect there."""
    return process.state_dir() / "kafka" / "sasl-password"


def _sasl_password() -> str:
    path = sasl_password_file()
    if not path.is_file():
        # No line break: Kafka's Java clients read the file as it is.
        process.write_private(path, secrets.token_urlsafe(24))
    return path.read_text()


def tls_ca_file() -> Path:
    """The certificate of the CA that signed the TLS listener's: what kafka.ssl_ca_file
    names to connect there."""
    return process.state_dir() / "kafka" / "tls" / "ca.pem"


def tls_client_files() -> tuple[Path, Path]:
    """The client certificate and its private key (PEM, the key unencrypted PKCS#8) that the
    SSL listener takes, signed by the stack's CA: what kafka.ssl_certificate_file and
    kafka.ssl_key_file name to connect there."""
    folder = tls_ca_file().parent
    return folder / "client.pem", folder / "client.key"


def _tls_keystore(host: str) -> Path:
    """The TLS listener's private key and certificate (PEM), for `host`, 127.0.0.1 and
    localhost, signed by a CA made for it; both made with openssl on the first start."""
    folder = tls_ca_file().parent
    keystore = folder / "broker-keystore.pem"
    if keystore.is_file():
        return keystore
    if shutil.which("openssl") is None:
        raise process.StackError("openssl is needed to make the certificate of Kafka's TLS "
                                 "listener; install it ('apt-get install openssl').")
    folder.mkdir(parents=True, exist_ok=True)
    names = {f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}"
             for name in (host, "127.0.0.1", "localhost")}
    (folder / "broker.ext").write_text(f"subjectAltName={','.join(sorted(names))}\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "3650", "-subj", "/CN=streamad local CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
         "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "broker.crt", "-days", "3650", "-extfile", "broker.ext"],
    ]
    for step in steps:
        process.run_checked(["openssl", *step], "making the Kafka TLS certificate",
                            "kafka-tls", cwd=folder)
    process.write_private(keystore, (folder / "broker.key").read_text()
                          + (folder / "broker.crt").read_text())
    for private in ("ca.key", "broker.key"):
        (folder / private).chmod(0o600)
    return keystore


def _tls_client_certificate() -> None:
    """Make `tls_client_files` with openssl, signed by the CA `_tls_keystore` made, unless
    they are there."""
    certificate, key = tls_client_files()
    if certificate.is_file() and key.is_file():
        return
    folder = certificate.parent
    steps = [
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.name, "-out", "client.csr",
         "-subj", f"/CN={SASL_USER}"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", certificate.name, "-days", "3650"],
    ]
    for step in steps:
        process.run_checked(["openssl", *step], "making the Kafka client certificate",
                            "kafka-tls", cwd=folder)
    key.chmod(0o600)


def _server_properties(host: str, port: int, controller_port: int,
                       logins: dict[str, tuple[str, int]], data_dir: Path, password: str,
                       keystore: Path) -> str:
    plain_login = (f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                   f'user_{SASL_USER}="{password}";')
    # SCRAM users live in the cluster's metadata (_ensure_scram_user), not in this file.
    scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    login_listeners = ",".join(f"{protocol}://{login_host}:{login_port}"
                               for protocol, (login_host, login_port) in logins.items())
    protocols = ",".join(f"{protocol}:{protocol}" for protocol in logins)
    tls = "\n".join(f"listener.name.{listener}.ssl.keystore.type=PEM\n"
                    f"listener.name.{listener}.ssl.keystore.location={keystore}"
                    for listener in ("sasl_ssl", "ssl"))
    sasl_logins = "\n".join(
        f"listener.name.{listener}.sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}\n"
        f"listener.name.{listener}.plain.sasl.jaas.config={plain_login}\n"
        f"listener.name.{listener}.scram-sha-256.sasl.jaas.config={scram_login}\n"
        f"listener.name.{listener}.scram-sha-512.sasl.jaas.config={scram_login}"
        for listener in ("sasl_plaintext", "sasl_ssl"))
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port},{login_listeners}
advertised.listeners=PLAINTEXT://{host}:{port},{login_listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{protocols}
{sasl_logins}
{tls}
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location={tls_ca_file()}
listener.name.ssl.ssl.client.auth=required
log.dirs={data_dir}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.max.timeout.ms={TRANSACTION_MAX_TIMEOUT_MS}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
"""


def _java_argv(libs: Path, main_class: str, *args: str, heap: str = "512m") -> list[str]:
    config_dir = process.state_dir() / "kafka"
    return ["java", f"-Xmx{heap}", f"-Xms{heap}",
            f"-Dlog4j2.configurationFile={config_dir / 'log4j2.yaml'}",
            "-cp", f"{libs}/*", main_class, *args]


def start(host: str, port: int) -> bool:
    """Start the broker unless ours already runs; True when this call started it."""
    if process.running_pid(NAME) is not None:
        return False
    process.require_free_port(host, port, "STREAMAD__KAFKA__BOOTSTRAP_SERVERS")
    controller_port = port + 1
    logins = login_listeners(host, port)
    for extra in (controller_port, *(login_port for _, login_port in logins.values())):
        process.require_free_port(host, extra, f"STREAMAD__KAFKA__BOOTSTRAP_SERVERS (the "
                                  f"controller and login listeners take the next "
                                  f"{len(logins) + 1} ports)")
    libs = install()
    config_dir = process.state_dir() / "kafka"
    data_dir = config_dir / "data"
    config_dir.mkdir(parents=True, exist_ok=True)
    properties = config_dir / "server.properties"
    password = _sasl_password()
    keystore = _tls_keystore(host)
    _tls_client_certificate()
    process.write_private(properties, _server_properties(  # it holds the SASL password
        host, port, controller_port, logins, data_dir, password, keystore))
    (config_dir / "log4j2.yaml").write_text(_LOG4J2)
    if not (data_dir / "meta.properties").is_file():
        cluster_id = _random_cluster_id()
        process.run_checked(
            _java_argv(libs, "kafka.tools.StorageTool", "format", "--standalone",
                       f"--cluster-id={cluster_id}", "-c", str(properties), heap="256m"),
            "formatting Kafka's KRaft storage", "kafka-format")
    process.start_process(NAME, _java_argv(libs, "kafka.Kafka", str(properties)))
    process.wait_until(lambda: process.port_open(host, port), 90,
                       f"listening on {host}:{port}", NAME)
    _ensure_scram_user(f"{host}:{port}", password)
    return True


def _ensure_scram_user(plain_address: str, password: str) -> None:
    """Give SASL_USER its SCRAM credentials (both mechanisms, the PLAIN password), through
    the plain listener; setting them again is harmless."""
    from kafka.admin import KafkaAdminClient, ScramMechanism, UserScramCredentialUpsertion
    admin = KafkaAdminClient(bootstrap_servers=plain_address, client_id="streamad-stack",
                             request_timeout_ms=30_000)
    try:
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            # One request per mechanism: Kafka alters a user's credentials once a request.
            error = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(SASL_USER, mechanism, password)]).get(SASL_USER)
            if error:
                raise process.StackError(f"Kafka refused the {mechanism.name} credentials of "
                                         f"{SASL_USER}: {error}")
    finally:
        admin.close()


def _random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64, as Kafka's own tool makes them.

    Like Kafka, avoid a leading '-', which command lines would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def stop() -> bool:
    return process.stop_process(NAME, timeout_s=60)


def ensure_topics(connection: KafkaConfig, topics: list[str], partitions: int) -> list[str]:
    """Create any of `topics` that do not exist yet; returns the ones created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**connection.client_settings(), client_id="streamad-stack",
                             request_timeout_ms=30_000)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                     for t in missing])
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        admin.close()
