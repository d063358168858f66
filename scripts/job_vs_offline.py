"""Do the streaming job's scores and alerts equal the offline path's, on the whole SMD test
halves?

    bin/streamad demo                                    # the job scores the test halves
    bin/streamad python scripts/job_vs_offline.py        # about 30 s; exits 1 on a mismatch

The integration tests check this on slices; this checks it on everything the demo wrote.
It scores the labeled folder offline exactly as `streamad evaluate` does (a detector fitted
on the train windows, which is the one `streamad train` writes), reads every window score of
the same model version from InfluxDB, and compares them window by window: scores to a
relative 1e-6, and decisions exactly. A key's last windows can be missing from InfluxDB (no
later event moves the watermark past them); they are counted, not compared.

Then the alerts: the incident and drift policies run offline over the windows the job
wrote, and every alert of the model in the alerts topic (read_committed) must be one of
theirs, equal as the integration tests compare them (`udfs.incident_alerts.alert_mismatch`:
end, peak score and grade, drivers in order with their shares and deviations to their
rounding), and every one of theirs must be in the topic. A demo run twice on the
same model sends its alerts twice; they are compared as distinct alerts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from models.artifact import read_metadata
from streamad.cli import DEFAULT_DATA_DIR
from streamad.config import load_config
from streamad.evaluate import WindowedRun, find_keys
from streamad.alerts import read_topic
from streamad.stack import influxdb
from udfs.incident_alerts import alert_identity, alert_mismatch, offline_alerts

RELATIVE_TOLERANCE = 1e-6


def job_scores(config, version: str, key: str) -> pd.DataFrame:
    """The job's score and decision of every window of `key`, indexed by window end (ms)."""
    statement = (f'SELECT "score", "is_anomaly" FROM "{config.influxdb.measurement}" '
                 f"WHERE \"model_version\" = '{version}' "
                 f"AND \"{config.schema.key_field}\" = '{key}'")
    result = influxdb.query(config.influxdb.url, statement, database=config.influxdb.database,
                            token=config.influxdb.read_token())["results"][0]
    if not result.get("series"):
        return pd.DataFrame(columns=["score", "is_anomaly"])
    series = result["series"][0]
    return pd.DataFrame(series["values"], columns=series["columns"]).set_index("time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="the labeled folder the demo replayed (default: the SMD data)")
    args = parser.parse_args()
    config = load_config()
    data_dir = Path(args.data_dir)
    run = WindowedRun.of_folder(config, data_dir)
    detector, scored, _ = run.score(config.model.detector_settings(), explain=True)
    metadata = read_metadata(config.artifact_path)
    trained, version = metadata["thresholds_per_key"], metadata["model_version"]
    if any(not np.isclose(detector.threshold_for(k), v, rtol=1e-12) for k, v in trained.items()):
        print(f"The model in {config.artifact_path} is not the one this configuration trains "
              f"on {data_dir}; run 'bin/streamad demo --retrain' first.", file=sys.stderr)
        return 1

    key_field = config.schema.key_field
    test = run.aggregates.loc[~run.is_train]
    print(f"model {version}\n")
    print("| key | windows offline | in InfluxDB | compared | max relative score difference "
          "| decisions that differ |")
    print("|---|---|---|---|---|---|")
    failed = False
    written = []
    for key in find_keys(data_dir):
        rows = test[key_field] == key
        offline = pd.DataFrame({"offline_score": scored.loc[rows[rows].index, "score"].to_numpy(),
                                "offline_anomaly": scored.loc[rows[rows].index,
                                                              "is_anomaly"].to_numpy()},
                               index=test.loc[rows, "window_end_ms"].to_numpy())
        job = job_scores(config, version, key)
        both = job.join(offline, how="inner")
        written.append(test.loc[rows][test.loc[rows, "window_end_ms"].isin(both.index)].index)
        difference = ((both["score"] - both["offline_score"]).abs()
                      / both["offline_score"].abs().clip(lower=1e-12))
        largest = float(difference.max()) if len(both) else float("nan")
        decisions = int((both["is_anomaly"].astype(bool) != both["offline_anomaly"]).sum())
        unmatched = len(job) - len(both)
        failed |= (not len(both) or largest > RELATIVE_TOLERANCE or decisions > 0
                   or unmatched > 0)
        print(f"| {key} | {len(offline)} | {len(job)} | {len(both)} | {largest:.1e} | "
              f"{decisions} |")
    print("\n" + ("MISMATCH: see the table." if failed else
                  "Every window the job wrote has the offline score and decision."))
    compared = pd.Index(np.concatenate(written))
    windows = test.loc[compared, [key_field, "window_start_ms", "window_end_ms"]].rename(
        columns={key_field: "key"}).join(scored.loc[compared])
    failed |= not alerts_match(config, version, windows)
    return 1 if failed else 0


def alerts_match(config, version: str, windows: pd.DataFrame) -> bool:
    """Print how the alerts topic's alerts of model `version` compare with the policies'
    alerts on `windows` offline; True when they agree."""
    expected = {alert_identity(a): a for a in offline_alerts(
        windows, config.alerts.policy(config.window), config.alerts.drift_policy(),
        config.model.explain_top)}
    sent = [json.loads(value) for _, value in
            read_topic(config.kafka, config.kafka.alerts_topic)]
    sent = [a for a in sent if a["model_version"] == version]
    distinct = {alert_identity(a) for a in sent}
    unexpected, missing = distinct - expected.keys(), expected.keys() - distinct
    differences = [(alert_identity(alert), problem) for alert in sent
                   if alert_identity(alert) in expected
                   and (problem := alert_mismatch(alert, expected[alert_identity(alert)]))]
    print(f"\nAlerts of model {version}: {len(sent)} in {config.kafka.alerts_topic} "
          f"({len(distinct)} distinct), {len(expected)} offline; only in the topic "
          f"{len(unexpected)}, only offline {len(missing)}; that differ (end, peak, drivers, "
          f"shares, deviations): {len(differences)}.")
    for identity, problem in differences[:5]:
        print(f"  {identity}: {problem}")
    for identity in sorted(unexpected)[:5]:
        print(f"  only in the topic: {identity}")
    for identity in sorted(missing)[:5]:
        print(f"  only offline: {identity}")
    agree = not (unexpected or missing or differences)
    print("Every alert the job sent is the offline one, drivers included." if agree
          else "MISMATCH in the alerts.")
    return agree


if __name__ == "__main__":
    sys.exit(main())
