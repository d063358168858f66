"""Versions of the servers the local stack installs: the one place that records the pairing.

apache-flink (pinned in pyproject.toml) must match the Kafka connector's Flink suffix:
flink-sql-connector-kafka 5.0.0-2.2 is built for Flink 2.2, and no connector release exists
for Flink 2.3 yet, so the project stays on apache-flink 2.2.x until one does.
"""

FLINK_VERSION = "2.2.1"
KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"
KAFKA_CONNECTOR_ARTIFACT = f"org.apache.flink:flink-sql-connector-kafka:{KAFKA_CONNECTOR_VERSION}"

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"

# InfluxDB 1.8 is the newest line that builds from the Go module proxy with Go alone (2.x
# needs Rust-built libflux and GitHub-only UI assets); it serves /api/v2/write for
# influxdb-client and InfluxQL on /query for Grafana.
INFLUXDB_MODULE = "github.com/influxdata/influxdb/cmd/influxd"
INFLUXDB_VERSION = "v1.8.10"
