"""Flink SQL for the anomaly job, generated from the job configuration.

Pure string building, so it can be read and tested without a cluster. The `*_query`
functions are views; the job registers them from Table objects so that each is computed once
however many sinks read it (a SQL CREATE VIEW would be expanded, and its UDFs run, per sink).
The data's path:

    events_raw (Kafka, raw payload; event time parsed here, watermarks)
      -> checked (parse_event UDF: reason, key, metrics; late events get a reason too)
         -> dead_letters (Kafka, exactly-once)             where reason IS NOT NULL
         -> window_aggregates (HOP/TUMBLE, per key)          where reason IS NULL
          [ -> windows_with_levels (OVER each key's last windows: recent levels) ]
            -> scored (score_windows UDF: score, grade, threshold, drivers)
               -> influx_writes (write_scores UDF -> blackhole)   every window
               -> scored_windows -> IncidentAlerts (DataStream, keyed state, see
                  udfs/incident_alerts.py) -> alerts (Kafka, exactly-once)
                                                     an alert per incident open and end
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.detector import driver_columns
from models.features import (AGGREGATES, COUNT_COLUMN, aggregate_name,
                             recent_level_names)
from streamad.config import KAFKA_PASSWORD_ENV_VAR, JobConfig, KafkaConfig
from udfs.influx_sink import SCORE_FIELDS

PARSE_UDF, SCORE_UDF, WRITE_UDF = "parse_event", "score_windows", "write_scores"
# The time attribute of the checked events once they are computed (see build_job): the same
# instant as event_time, with the source's watermarks.
ROWTIME = "rowtime"
# Length of the sortable time prefix yyyyMMddHHmmssSSS of the "first" and "last" aggregates.
_TIME_DIGITS = 17


@dataclass(frozen=True)
class RunOptions:
    """How this run reads its source; not part of the job configuration."""
    # Stop at the offsets that are the latest when the job starts (tests, backfills).
    bounded: bool = False


def quote(identifier: str) -> str:
    return f"`{identifier}`"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def seconds(value: int) -> str:
    """An interval literal of `value` seconds.

    Written as DAY TO SECOND: `INTERVAL '300' SECOND` exceeds Calcite's default 2-digit
    precision, and Flink rejects a wider one.

    >>> seconds(90061)
    "INTERVAL '1 01:01:01' DAY TO SECOND"
    """
    days, rest = divmod(int(value), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{secs:02d}' DAY TO SECOND"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{literal(k)} = {literal(v)}" for k, v in options.items())


def event_time_expression(config: JobConfig) -> str:
    """SQL that parses the time field of `payload`; NULL when it does not parse.

    Strict, to agree with streamad.events.parse_time_ms: Flink's parsers are lenient (they
    clamp 2024-02-30 to 2024-02-29, truncate "1.5" to 1), so a parsed ISO time must format
    back to the very text it came from, and an epoch must be all digits.
    """
    raw = f"JSON_VALUE(payload, {literal('$.' + config.schema.time_field)})"
    time_format = config.schema.time_format
    if time_format == "iso8601":
        # Only UTC with a literal Z: Flink's pattern parser ignores other offsets silently,
        # so they are rejected (dead-letter) instead of being shifted in time.
        branches = []
        for length, pattern in ((20, "yyyy-MM-dd'T'HH:mm:ss'Z'"),
                                (24, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")):
            parsed = f"TO_TIMESTAMP_LTZ({raw}, {literal(pattern)})"
            branches.append(f"WHEN CHAR_LENGTH({raw}) = {length} AND "
                            f"DATE_FORMAT({parsed}, {literal(pattern)}) = {raw} THEN {parsed}")
        return f"CASE {' '.join(branches)} END"
    precision = 3 if time_format == "epoch_ms" else 0
    return (f"CASE WHEN REGEXP({raw}, '^-?[0-9]+$') "
            f"THEN TO_TIMESTAMP_LTZ(TRY_CAST({raw} AS BIGINT), {precision}) END")


# flink-sql-connector-kafka relocates the Kafka client into this package: the classes its
# client settings name (login modules, config providers) must be named there.
SHADED_KAFKA = "org.apache.flink.kafka.shaded.org.apache.kafka"
_LOGIN_MODULES = {"PLAIN": "common.security.plain.PlainLoginModule",
                  "SCRAM-SHA-256": "common.security.scram.ScramLoginModule",
                  "SCRAM-SHA-512": "common.security.scram.ScramLoginModule"}
# The config providers the secrets come through, by their alias in the client settings:
# files (the password file, the client certificate and key) and environment variables.
_FROM_FILE = ("streamad_file", "DirectoryConfigProvider")
_FROM_ENVIRONMENT = ("streamad_env", "EnvVarConfigProvider")


def _kafka_common(config: JobConfig) -> dict[str, str]:
    """The Kafka tables' connection settings. Secrets (the SASL password, the client's
    private key) are left to config providers that each Kafka client (on the TaskManagers,
    and the source's on the JobManager) resolves where it runs: the SQL, which the web UI and
    the logs show, holds only where they are."""
    kafka = config.kafka
    settings = {"connector": "kafka", "properties.bootstrap.servers": kafka.bootstrap_servers}
    providers: dict[str, str] = {}
    if kafka.security_protocol != "PLAINTEXT":
        settings["properties.security.protocol"] = kafka.security_protocol
    if kafka.uses_sasl:
        settings.update(_sasl_settings(kafka, providers))
    if kafka.uses_ssl and kafka.ssl_ca_file:
        settings.update({"properties.ssl.truststore.type": "PEM",
                         "properties.ssl.truststore.location": kafka.ssl_ca_file})
    if kafka.uses_client_certificate:
        if Path(kafka.ssl_key_file).is_file():  # else it may be on the Flink processes only
            kafka.check_client_key()
        # The key and the chain as values, each read from its own file as users hold them
        # (a PEM keystore file would need both in one).
        settings.update({
            "properties.ssl.keystore.type": "PEM",
            "properties.ssl.keystore.certificate.chain": _from_file(kafka.ssl_certificate_file,
                                                                    providers),
            "properties.ssl.keystore.key": _from_file(kafka.ssl_key_file, providers)})
    if providers:
        settings["properties.config.providers"] = ",".join(providers)
        for alias, provider in providers.items():
            settings[f"properties.config.providers.{alias}.class"] = (
                f"{SHADED_KAFKA}.common.config.provider.{provider}")
    return settings


def _from_file(path: str, providers: dict[str, str]) -> str:
    """The reference to `path`'s content that the file config provider resolves."""
    alias, provider = _FROM_FILE
    providers[alias] = provider
    return f"${{{alias}:{Path(path).parent}:{Path(path).name}}}"


def _sasl_settings(kafka: KafkaConfig, providers: dict[str, str]) -> dict[str, str]:
    """The SASL login, its password from the password file, or else from the environment
    variable, through a config provider (added to `providers`)."""
    if kafka.sasl_password_file:
        password = _from_file(kafka.sasl_password_file, providers)
    else:
        alias, provider = _FROM_ENVIRONMENT
        providers[alias] = provider
        password = f"${{{alias}:{KAFKA_PASSWORD_ENV_VAR}}}"
    login_module = f"{SHADED_KAFKA}.{_LOGIN_MODULES[kafka.sasl_mechanism]}"
    return {"properties.sasl.mechanism": kafka.sasl_mechanism,
            "properties.sasl.jaas.config": (f'{login_module} required username='
                                            f'"{kafka.sasl_username}" password="{password}";')}


def _exactly_once_sink(config: JobConfig, topic: str, prefix: str) -> dict[str, str]:
    return {**_kafka_common(config), "topic": topic,
            "sink.delivery-guarantee": "exactly-once",
            "sink.transactional-id-prefix": prefix,
            "properties.transaction.timeout.ms": str(config.kafka.transaction_timeout_ms)}


def source_ddl(config: JobConfig, options: RunOptions) -> str:
    parsed_time = event_time_expression(config)
    settings = {
        **_kafka_common(config),
        "topic": config.kafka.events_topic,
        "properties.group.id": config.kafka.consumer_group,
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": config.kafka.start_from,
        "format": "raw",
    }
    if options.bounded:
        settings["scan.bounded.mode"] = "latest-offset"
    return f"""CREATE TEMPORARY TABLE events_raw (
  payload STRING,
  source_topic STRING METADATA FROM 'topic' VIRTUAL,
  source_partition INT METADATA FROM 'partition' VIRTUAL,
  source_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  time_ok AS ({parsed_time}) IS NOT NULL,
  -- An unparseable time becomes the epoch: it never moves the watermark, and the event
  -- goes to the dead-letter topic with its reason.
  event_time AS COALESCE({parsed_time}, TO_TIMESTAMP_LTZ(0, 3)),
  WATERMARK FOR event_time AS event_time - {seconds(config.window.max_out_of_orderness_s)}
) WITH (
  {_with(settings)}
)"""


def dead_letter_ddl(config: JobConfig) -> str:
    return f"""CREATE TEMPORARY TABLE dead_letters (
  reason STRING,
  payload STRING,
  source_topic STRING,
  source_partition INT,
  source_offset BIGINT,
  rejected_at STRING
) WITH (
  {_with({**_exactly_once_sink(config, config.kafka.dead_letter_topic,
                               config.flink.job_name + '-dead-letters'),
          'format': 'json'})}
)"""


def alerts_ddl(config: JobConfig) -> str:
    return f"""CREATE TEMPORARY TABLE alerts (
  `alert` STRING,
  `key` STRING,
  incident_start STRING,
  incident_end STRING,
  opened_at STRING,
  peak_score DOUBLE,
  peak_grade DOUBLE,
  windows INT,
  threshold DOUBLE,
  model_version STRING,
  out_of_range STRING,
  drivers ARRAY<ROW<metric STRING, share DOUBLE, deviation DOUBLE>>
) WITH (
  {_with({**_exactly_once_sink(config, config.kafka.alerts_topic,
                               config.flink.job_name + '-alerts'),
          'key.format': 'raw', 'key.fields': 'key',
          'value.format': 'json', 'value.fields-include': 'ALL'})}
)"""


def influx_writes_ddl() -> str:
    return ("CREATE TEMPORARY TABLE influx_writes (points BIGINT) "
            "WITH ('connector' = 'blackhole')")


def checked_query(config: JobConfig) -> str:
    metrics = ", ".join(f"parsed.{quote(m)} AS {quote(m)}" for m in config.schema.metric_fields)
    return f"""SELECT
  CASE
    WHEN parsed.reason IS NOT NULL THEN parsed.reason
    WHEN event_time <= CURRENT_WATERMARK(event_time) THEN CONCAT(
      'late: event time ', DATE_FORMAT(event_time, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
      ' is not after the watermark ',
      DATE_FORMAT(CURRENT_WATERMARK(event_time), 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
      '; raise window.max_out_of_orderness_s to accept events this late')
  END AS reason,
  parsed.event_key AS event_key, {metrics},
  event_time, payload, source_topic, source_partition, source_offset
FROM (
  SELECT {PARSE_UDF}(payload, time_ok) AS parsed, event_time, payload,
         source_topic, source_partition, source_offset
  FROM events_raw
)"""


def window_aggregates_query(config: JobConfig) -> str:
    window = config.window
    if window.kind == "hopping":
        table_function = (f"HOP(TABLE good_events, DESCRIPTOR({ROWTIME}), "
                          f"{seconds(window.slide_s)}, {seconds(window.size_s)})")
    else:
        table_function = (f"TUMBLE(TABLE good_events, DESCRIPTOR({ROWTIME}), "
                          f"{seconds(window.size_s)})")
    # "first" and "last" are the values at the earliest and latest event times. Hopping
    # windows are computed from slices, which needs mergeable aggregates, and FIRST_VALUE and
    # LAST_VALUE are not: so take the MIN and MAX of "<event time as yyyyMMddHHmmssSSS>|<value>"
    # (text order is time order) and read the value back.
    sql_aggregate = {
        "sum": "SUM({m})", "sumsq": "SUM({m} * {m})", "min": "MIN({m})", "max": "MAX({m})",
    }
    timed_value = ("(CONCAT(DATE_FORMAT(event_time, 'yyyyMMddHHmmssSSS'), '|', "
                   "CAST({m} AS STRING)))")
    sql_aggregate["first"], sql_aggregate["last"] = "MIN" + timed_value, "MAX" + timed_value
    inner, outer = [f"CAST(COUNT(*) AS DOUBLE) AS {COUNT_COLUMN}"], [COUNT_COLUMN]
    for metric in config.schema.metric_fields:
        for aggregate in AGGREGATES:
            name = quote(aggregate_name(metric, aggregate))
            inner.append(f"{sql_aggregate[aggregate].format(m=quote(metric))} AS {name}")
            outer.append(f"CAST(SUBSTRING({name} FROM {_TIME_DIGITS + 2}) AS DOUBLE) AS {name}"
                         if aggregate in ("first", "last") else name)
    inner_select, outer_select = ",\n    ".join(inner), ",\n  ".join(outer)
    # window_time (the window's end less 1 ms) is the windows' time attribute, which the
    # recent levels' OVER aggregation orders each key's windows by.
    return f"""SELECT event_key, window_start, window_end, window_time,
  {outer_select}
FROM (
  SELECT event_key, window_start, window_end, window_time,
    {inner_select}
  FROM TABLE({table_function})
  GROUP BY event_key, window_start, window_end, window_time
)"""


def windows_with_levels_query(config: JobConfig, windows: int) -> str:
    """window_aggregates with every metric's recent level (models/features.py): its window
    mean over the key's `windows` windows before, in the same steps as
    `models.features.recent_levels`. The OVER aggregation keeps each key's last `windows`
    rows in state."""
    count = quote(COUNT_COLUMN)
    means = {m: f"{quote(aggregate_name(m, 'sum'))} / {count}" for m in config.schema.metric_fields}
    totals = ",\n    ".join(f"SUM({mean}) OVER recent AS {quote(m + '__recent_total')}"
                            for m, mean in means.items())
    levels = ",\n  ".join(
        f"CASE WHEN recent_windows > 1 THEN ({quote(m + '__recent_total')} - {mean}) "
        f"/ (recent_windows - 1) ELSE {mean} END AS {quote(name)}"
        for (m, mean), name in zip(means.items(), recent_level_names(means)))
    return f"""SELECT *,
  {levels}
FROM (
  SELECT *,
    {totals},
    CAST(COUNT(*) OVER recent AS DOUBLE) AS recent_windows
  FROM window_aggregates
  WINDOW recent AS (PARTITION BY event_key ORDER BY window_time
                    ROWS BETWEEN {int(windows)} PRECEDING AND CURRENT ROW)
)"""


def good_events_query(config: JobConfig) -> str:
    metrics = ", ".join(quote(m) for m in config.schema.metric_fields)
    return (f"SELECT event_key, event_time, {ROWTIME}, {metrics} FROM checked "
            f"WHERE reason IS NULL")


def scored_query(argument_names: list[str], source: str = "window_aggregates") -> str:
    """The scoring UDF over every window of `source`, given the key and `argument_names`."""
    arguments = ", ".join(["event_key"] + [quote(a) for a in argument_names])
    return f"""SELECT event_key, window_start, window_end, {SCORE_UDF}({arguments}) AS s
FROM {source}"""


_ISO_SECONDS = "'yyyy-MM-dd''T''HH:mm:ss''Z'''"


def scored_windows_query(explain_top: int) -> str:
    """What the incident policy sees of each window, in the order IncidentAlerts reads it."""
    drivers = "".join(f", s.{', s.'.join(columns)}" for columns in driver_columns(explain_top))
    return f"""SELECT event_key, DATE_FORMAT(window_start, {_ISO_SECONDS}) AS window_start,
  DATE_FORMAT(window_end, {_ISO_SECONDS}) AS window_end, s.score, s.grade, s.is_anomaly,
  s.threshold, s.model_version, s.out_of_range{drivers}
FROM scored"""


def insert_dead_letters() -> str:
    return """INSERT INTO dead_letters
SELECT reason, payload, source_topic, source_partition, source_offset,
       DATE_FORMAT(CURRENT_TIMESTAMP, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')
FROM checked WHERE reason IS NOT NULL"""


def insert_influx_writes(features: list[str]) -> str:
    values = ", ".join([f"s.{field}" for field in SCORE_FIELDS]
                       + [f"s.{quote(f)}" for f in features])
    return f"""INSERT INTO influx_writes
SELECT {WRITE_UDF}(event_key, window_end, s.model_version, {values}) FROM scored"""


def insert_alerts(explain_top: int) -> str:
    """From the view `incident_alerts` (the IncidentAlerts stream) into the alerts topic."""
    drivers = ", ".join(f"ROW({', '.join(columns)})" for columns in driver_columns(explain_top))
    return f"""INSERT INTO alerts
SELECT `alert`, `key`, incident_start, incident_end, opened_at, peak_score, peak_grade,
       windows, threshold, model_version, out_of_range, ARRAY[{drivers}]
FROM incident_alerts"""
