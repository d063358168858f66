"""The job's own counters (udfs/metrics.py), read from Flink's REST API as the web UI shows
them: on a run without failures each must equal what the run's input and the offline
computation give."""

from __future__ import annotations

from streamad import jobs_client
from streamad.replay import encoded, ordered_events
from streamad.stack import flink

from .helpers import (BAD_EVENTS, expected_alerts, expected_windows, feed_and_wait_for_scores,
                      wait_for)


def test_streamad_counters_count_events_windows_points_and_alerts(
        isolated, smd_slices, idle_cluster):
    config, config_path = isolated
    events = ordered_events(smd_slices["test"], config)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    expected = expected_windows(config, events)
    alerts = [alert["alert"] for alert in expected_alerts(config, expected)]
    want = {
        # every good event, and the flush event sent on each partition
        "events_accepted": len(messages) + config.kafka.partitions,
        "events_malformed": len(BAD_EVENTS),
        "windows_scored": len(expected),
        "windows_anomalous": int(expected["is_anomaly"].sum()),
        "windows_out_of_range": int(sum(map(bool, expected["out_of_range"]))),
        "influxdb_points_written": len(expected),
        "influxdb_write_retries": 0,
        "incidents_opened": alerts.count("open"),
        "incidents_ended": alerts.count("end"),
        "drifts_started": alerts.count("drift"),
        "drifts_ended": alerts.count("drift_end"),
    }
    assert want["windows_anomalous"] and want["windows_out_of_range"] and want["drifts_started"], \
        "the slices should have anomalous and out-of-range windows, and drift"

    job_id = jobs_client.submit(config, config_path)
    try:
        feed_and_wait_for_scores(config, messages, expected)
        # Python operators report at the end of each bundle, and the JobManager fetches
        # metrics every few seconds: wait until the counters have caught up.
        latest: dict[str, int] = {}

        def caught_up() -> bool:
            latest.clear()
            latest.update(flink.job_counters(config.flink.rest_url, job_id))
            return latest == want

        try:
            wait_for(caught_up, 90, "the job's counters")
        except AssertionError:
            pass  # the comparison below shows which counter differs
        assert latest == want
    finally:
        jobs_client.cancel_running(config)
