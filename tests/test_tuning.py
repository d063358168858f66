"""Leave-one-key-out tuning: the choosing logic alone, and `streamad tune` on real SMD data."""

import json

import pandas as pd
import pytest

from models.tuning import best_candidate, leave_one_key_out


def test_held_out_key_never_votes_for_its_own_candidate():
    # 'overfit' is best on key a only because of key a itself; on b and c 'steady' wins.
    table = pd.DataFrame({"a": [0.95, 0.30], "b": [0.10, 0.40], "c": [0.15, 0.45]},
                         index=["overfit", "steady"])
    assert best_candidate(table)[0] == "overfit"  # in sample, key a's own label decides
    held_out = {r.key: r for r in leave_one_key_out(table)}
    assert held_out["a"].chosen == "steady"
    assert held_out["a"].held_out_f1 == pytest.approx(0.30)
    assert held_out["a"].others_f1 == pytest.approx((0.40 + 0.45) / 2)
    assert held_out["b"].chosen == "overfit"
    assert held_out["b"].held_out_f1 == pytest.approx(0.10)


def test_leave_one_key_out_says_what_it_needs():
    with pytest.raises(ValueError, match="at least 2 keys"):
        leave_one_key_out(pd.DataFrame({"a": [0.5]}, index=["x"]))
    with pytest.raises(ValueError, match="missing values"):
        leave_one_key_out(pd.DataFrame({"a": [0.5], "b": [None]}, index=["x"]))


def test_tune_says_what_is_wrong(labeled_folder, tmp_path, capsys):
    from streamad.cli import main
    assert main(["tune", "--data-dir", str(labeled_folder), "--rates", "1.5"]) == 1
    assert "--rates 1.5: target_alert_rate must be between 0 and 1 (a probability), got 1.5." in (
        capsys.readouterr().err)
    assert main(["tune", "--data-dir", str(labeled_folder), "--multiples", "20,0.5"]) == 1
    assert "--multiples 20,0.5: median_multiple must be above 1" in capsys.readouterr().err
    assert main(["tune", "--data-dir", str(labeled_folder), "--statistics", "mean;mean,median"]
                ) == 1
    assert ("--statistics mean,median: features.statistics has 'median'; allowed: mean, std"
            in capsys.readouterr().err)
    (labeled_folder / "machine-3-3_train.csv").unlink()
    assert main(["tune", "--data-dir", str(labeled_folder), "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    assert "needs at least 2" in capsys.readouterr().err


def test_tune_chooses_on_other_keys_and_agrees_with_evaluate(labeled_folder, tmp_path,
                                                               monkeypatch):
    from streamad.cli import main
    out = tmp_path / "tuning"
    code = main(["tune", "--data-dir", str(labeled_folder), "--output", str(out),
                 "--kinds", "pca,iforest", "--caps", "10", "--rates", "0.005,0.02",
                 "--pot-risks", "0.001", "--multiples", "20,50", "--no-progress",
                 "--statistics", "mean,std;mean,std,min,max,last"])
    assert code == 0
    report = json.loads((out / "tuning.json").read_text())
    # pca: 2 rates + 1 risk + 2 multiples (50: the configured one); iforest's score has no
    # natural zero, so no multiple; each for the configured statistics (the second set given)
    # and for mean+std
    assert report["candidates"] == 2 * 8
    assert not any(name.startswith("iforest") and "median" in name for name in report["f1"])
    assert sum(name.endswith(", mean+std") for name in report["f1"]) == 8
    held_out = {r["key"]: r for r in report["leave_one_key_out"]}
    assert set(held_out) == {"machine-2-7", "machine-3-3"}
    f1 = report["f1"]
    for key, result in held_out.items():
        other = next(k for k in held_out if k != key)
        # with two keys, the choice for one key is the best candidate on the other
        assert f1[result["chosen"]][other] == max(row[other] for row in f1.values())
        assert result["held_out_f1"] == f1[result["chosen"]][key]

    # The F1 tune measured for a candidate is the one evaluate gives when configured with it:
    # the one chosen for a key, and one made of other window statistics.
    key, result = next(iter(held_out.items()))
    for candidate in (result["chosen"], "pca, cap 10, 20 x median, mean+std"):
        with monkeypatch.context() as environment:
            for section, settings in report["settings"][candidate].items():
                for name, value in settings.items():
                    environment.setenv(f"STREAMAD__{section.upper()}__{name.upper()}",
                                       json.dumps(value))
            evaluated = tmp_path / "evaluation"
            assert main(["evaluate", "--data-dir", str(labeled_folder), "--output",
                         str(evaluated), "--no-plots", "--no-progress", "--no-baselines"]) == 0
        evaluation = json.loads((evaluated / "evaluation.json").read_text())
        assert evaluation["rows"][0]["per_key"][key]["f1"] == pytest.approx(
            report["f1"][candidate][key])
    tuning_md = (out / "tuning.md").read_text()
    assert "Mean held-out point F1" in tuning_md
    assert "x window statistics" in tuning_md


def test_tune_help_states_the_grid_tune_uses():
    from streamad.cli import build_parser
    from streamad.tune import (DEFAULT_CAPS, DEFAULT_MULTIPLES, DEFAULT_POT_RISKS,
                               DEFAULT_RATES)
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["tune"]
                         .format_help().split())
    for values in (DEFAULT_CAPS, DEFAULT_RATES, DEFAULT_POT_RISKS, DEFAULT_MULTIPLES):
        assert "default: " + ",".join(f"{v:g}" for v in values) in help_text
