"""What the study scripts (scripts/*_study.py) share: their command line, and a markdown report
printed line by line as it is measured and written to a file at the end."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamad.cli import DEFAULT_DATA_DIR


def study_arguments(doc: str, output: str) -> argparse.ArgumentParser:
    """A parser with the studies' ``--data-dir`` (the labeled folder) and ``--output`` (the
    report), described by the first paragraph of the script's docstring `doc`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--output", default=output)
    return parser


class StudyReport:
    """Lines shown as soon as they are measured (a study takes a minute or more), and
    written together to `path` by `write`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(self.lines) + "\n")
