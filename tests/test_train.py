"""Training: a retrain that leaves out the windows the current model flags."""

import dataclasses

import pytest

from models.artifact import ArtifactError, load_artifact
from models.data import load_events_csv
from models.train import features_for, train, windows_for
from streamad.config import load_config


def _config(model_dir):
    config = load_config()
    return dataclasses.replace(config, model=dataclasses.replace(
        config.model, artifact_dir=str(model_dir)))


def _with_an_hour_far_off(source, target, first_row=3000, rows=60, shift=1.0):
    """`source` (an SMD CSV) written to `target` with every metric `shift` higher for `rows`
    minutes from `first_row` on: an anomaly in otherwise normal events."""
    header, *lines = source.read_text().splitlines(keepends=True)
    for i in range(first_row, first_row + rows):
        time, *values = lines[i].rstrip("\n").split(",")
        lines[i] = ",".join([time, *(f"{float(v) + shift:g}" for v in values)]) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + "".join(lines))
    return target


def test_a_retrain_leaves_out_the_windows_the_current_model_flags(labeled_folder, tmp_path):
    config = _config(tmp_path / "model")
    train(config, [labeled_folder / "machine-2-7_train.csv"])
    current = load_artifact(config.artifact_path)
    live = _with_an_hour_far_off(labeled_folder / "machine-2-7_train.csv",
                                 tmp_path / "live" / "machine-2-7_train.csv")

    aggregates = windows_for(load_events_csv([live], config.schema), config)
    scored = current.scorer.score(features_for(aggregates, config)[current.feature_names],
                                  aggregates[config.schema.key_field], explain=False)
    flagged = int((scored["score"] >= scored["threshold"]).sum())
    assert flagged >= 12, "the hour far off should be flagged (12 windows start in it)"

    retrained = train(config, [live], tmp_path / "retrained", keep_below=1.0)
    training_data = retrained.metadata["training_data"]
    assert training_data["left_out"] == {"model_version": current.model_version,
                                         "keep_below": 1.0, "windows": flagged}
    assert training_data["windows"] == len(aggregates) - flagged
    plain = train(config, [live], tmp_path / "plain")
    assert "left_out" not in plain.metadata["training_data"]
    assert plain.metadata["training_data"]["windows"] == len(aggregates)

    # What the two retrained models make of the hour: the one that left it out still flags
    # all of it; the one that learned it, less.
    hour = scored.index[(scored["score"] >= scored["threshold"]).to_numpy()]
    features = features_for(aggregates, config)[current.feature_names].loc[hour]
    keys = aggregates[config.schema.key_field].loc[hour]
    still_flagged = retrained.scorer.score(features, keys, explain=False)["is_anomaly"]
    learned = plain.scorer.score(features, keys, explain=False)["is_anomaly"]
    assert still_flagged.all()
    assert learned.sum() < still_flagged.sum()


def test_leaving_out_flagged_windows_needs_a_current_model(labeled_folder, tmp_path):
    config = _config(tmp_path / "no-model-yet")
    with pytest.raises(ArtifactError, match="with the model in use first, which cannot be "
                                            "loaded: no model artifact at .*without "
                                            "--keep-below"):
        train(config, [labeled_folder / "machine-2-7_train.csv"], tmp_path / "out",
              keep_below=1.0)


@pytest.mark.parametrize("keep_below", [0, -1.0, True])
def test_keep_below_must_be_a_positive_multiple(labeled_folder, tmp_path, keep_below):
    config = _config(tmp_path / "model")
    with pytest.raises(ValueError, match="keep_below must be a positive multiple"):
        train(config, [labeled_folder / "machine-2-7_train.csv"], keep_below=keep_below)


def test_train_command_says_what_it_left_out(labeled_folder, tmp_path, monkeypatch, capsys):
    from streamad.cli import main
    monkeypatch.setenv("STREAMAD__MODEL__ARTIFACT_DIR", str(tmp_path / "model"))
    assert main(["train", str(labeled_folder / "machine-2-7_train.csv")]) == 0
    live = _with_an_hour_far_off(labeled_folder / "machine-2-7_train.csv",
                                 tmp_path / "live" / "machine-2-7_train.csv")
    capsys.readouterr()
    assert main(["train", "--keep-below", "1", "--output", str(tmp_path / "new"),
                 str(live)]) == 0
    version = load_artifact(tmp_path / "model").model_version
    left_out = load_artifact(tmp_path / "new").metadata["training_data"]["left_out"]
    assert left_out["windows"] > 0
    assert (f"Left out {left_out['windows']} windows that model {version} scores at or "
            f"above 1 times its threshold." in capsys.readouterr().out)
    with pytest.raises(SystemExit) as refused:
        main(["train", "--keep-below", "0", str(live)])
    assert refused.value.code == 2
    assert "--keep-below: expected a number above 0, got '0'" in capsys.readouterr().err
