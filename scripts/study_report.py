"""What the study scripts (scripts/*_study.py) share: their command line, their start (the
configuration and the labeled folder windowed as the job windows it), and a markdown report
printed line by line as it is measured and written to a file at the end."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable

from streamad.cli import DEFAULT_DATA_DIR
from streamad.config import JobConfig, load_config
from streamad.evaluate import WindowedRun


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


@dataclasses.dataclass
class Study:
    """What a study starts from: its arguments, the configuration, the labeled folder, its
    windows and features (as the job computes them), and the report it writes."""
    args: argparse.Namespace
    config: JobConfig
    data_dir: Path
    run: WindowedRun
    report: StudyReport


def start_study(parser: argparse.ArgumentParser,
                check: Callable[[JobConfig], None] | None = None) -> Study:
    """Parse the command line, load the configuration, give it to `check` (which exits with
    a message when the study does not apply to it, before the windowing's few seconds), and
    window the labeled folder."""
    args = parser.parse_args()
    config = load_config()
    if check is not None:
        check(config)
    data_dir = Path(args.data_dir)
    return Study(args, config, data_dir, WindowedRun.of_folder(config, data_dir),
                 StudyReport(args.output))
