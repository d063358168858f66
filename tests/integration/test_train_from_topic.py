"""Training on a bounded read of the events topic gives the same model as training on the
same events from CSV, and leaves invalid events out."""

from __future__ import annotations

from models.artifact import load_artifact
from models.train import train, train_on_events
from streamad.history import read_events_topic
from streamad.replay import encoded, ordered_events

from .helpers import produce


def test_topic_training_equals_csv_training(isolated, smd_slices, tmp_path):
    config, _ = isolated
    files = smd_slices["train"][:2]
    events = ordered_events(files, config, limit_per_key=1500)
    messages = [(key, value) for key, value, _ in encoded(events, config)]
    messages.insert(100, (b"machine-1-6", b"not an event"))
    messages.insert(200, (b"machine-1-6", b'{"machine": "machine-1-6", "timestamp": "soon"}'))
    produce(config, messages)

    from_topic, reference = read_events_topic(config)
    assert len(from_topic) == len(events)
    assert reference["rejected_events"] == 2
    assert sum(end for _, end in reference["offsets"].values()) == len(messages)
    topic_model = train_on_events(config, from_topic, reference, tmp_path / "from-topic")
    # The drift remedy's retrain: the same read, less what the model in use flags.
    kept = train_on_events(config, from_topic, reference, tmp_path / "kept", keep_below=1.0)
    left_out = kept.metadata["training_data"]["left_out"]
    assert left_out["model_version"] == load_artifact(config.artifact_path).model_version
    assert (kept.metadata["training_data"]["windows"]
            == topic_model.metadata["training_data"]["windows"] - left_out["windows"])

    csv_events = ordered_events(files, config, limit_per_key=1500)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    limited = []
    for path in files:
        lines = path.read_text().splitlines(keepends=True)[:1501]
        (csv_dir / path.name).write_text("".join(lines))
        limited.append(csv_dir / path.name)
    csv_model = train(config, limited, tmp_path / "from-csv")

    assert len(csv_events) == len(from_topic)
    assert topic_model.metadata["sha256"] == csv_model.metadata["sha256"]
    assert topic_model.threshold == csv_model.threshold
    assert load_artifact(tmp_path / "from-topic").metadata["training_data"]["topic"] == \
        config.kafka.events_topic
