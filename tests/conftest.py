"""Fixtures shared by the test modules."""

import gzip
from pathlib import Path

import pytest

SMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "smd"


@pytest.fixture
def labeled_folder(tmp_path):
    if not SMD.is_dir():
        pytest.skip(f"the SMD data is not at {SMD}; put ../shared/data/smd beside the repo")
    for machine in ("machine-2-7", "machine-3-3"):
        for kind, rows in (("train", 6000), ("test", 6000)):
            with gzip.open(SMD / f"{machine}_{kind}.csv.gz", "rt") as source:
                lines = [next(source) for _ in range(rows + 1)]
            (tmp_path / f"{machine}_{kind}.csv").write_text("".join(lines))
        labels = (SMD / f"{machine}_interpretation_label.txt").read_text().splitlines()
        kept = [line for line in labels if line and int(line.split("-")[1].split(":")[0]) <= 6000]
        (tmp_path / f"{machine}_interpretation_label.txt").write_text("\n".join(kept) + "\n")
    return tmp_path
