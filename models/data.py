"""Reading historical events from CSV files, for training and for replaying into Kafka.

A CSV file has a header with the schema's time field, its metric fields and, optionally, its
key field. A file without a key column (the SMD files are one machine each) takes its key
from the file name, up to the first '_' : `machine-1-6_train.csv.gz` is key `machine-1-6`.
Times are parsed with the schema's time format, exactly as the job parses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from streamad.config import SchemaConfig

TIME_MS_COLUMN = "event_time_ms"


class DataError(ValueError):
    """An input file does not fit the schema; the message names the file and what is wrong."""


def key_from_filename(path: Path) -> str:
    """The key of a file without a key column.

    >>> key_from_filename(Path("data/machine-1-6_train.csv.gz"))
    'machine-1-6'
    """
    return path.name.split("_", 1)[0].split(".", 1)[0]


def cell_text(value) -> str:
    """A CSV cell as an error message shows it.

    >>> cell_text("abc"), cell_text(float("nan")), cell_text(np.int64(2))
    ("'abc'", 'empty', '2')
    """
    if isinstance(value, str):
        return repr(value)
    return "empty" if pd.isna(value) else str(value)


def first_bad_row(bad: np.ndarray) -> tuple[int, int]:
    """Where the first True of `bad` is: its row in the frame read from a CSV file (0-based)
    and that row's line in the file (1-based, the header being line 1), for error messages.

    >>> first_bad_row(np.array([False, True, True]))
    (1, 3)
    """
    row = int(np.flatnonzero(bad)[0])
    return row, row + 2


def _finite_numbers(values: pd.Series, path: Path, column: str) -> pd.Series:
    """`values` as floats; an empty cell, text or an infinity is a DataError that names the
    file, the line and what it holds."""
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        row, line = first_bad_row(bad)
        raise DataError(
            f"{path}, line {line}: {column} is {cell_text(values.iloc[row])}, not a finite "
            f"number ({int(bad.sum()):,} such line(s)). Fix or drop those lines: the job sends "
            f"such events to the dead-letter topic, and nothing learns from them.")
    return numbers


def load_events_csv(paths: Sequence[Path], schema: SchemaConfig,
                    extra_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Events of all files, one row each, in file order: key, event_time_ms, metrics (+extra)."""
    from streamad.events import parse_time_ms

    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        frame = pd.read_csv(path)
        missing = [c for c in (schema.time_field, *schema.metric_fields, *extra_columns)
                   if c not in frame.columns]
        if missing:
            raise DataError(f"{path} lacks column(s) {missing[:5]} that the schema needs; "
                            f"it has {list(frame.columns)[:8]}...")
        if schema.key_field not in frame.columns:
            frame[schema.key_field] = key_from_filename(path)
        times = frame[schema.time_field].map(lambda v: parse_time_ms(v, schema.time_format))
        if times.isna().any():
            row, line = first_bad_row(times.isna().to_numpy())
            raise DataError(f"{path}, line {line}: time {frame[schema.time_field].iloc[row]!r} "
                            f"does not parse as schema.time_format {schema.time_format!r}.")
        out = frame[[schema.key_field]].astype(str)
        out[TIME_MS_COLUMN] = times.astype(np.int64)
        for column in schema.metric_fields:
            out[column] = _finite_numbers(frame[column], path, column)
        for column in extra_columns:
            out[column] = frame[column]
        frames.append(out)
    if not frames:
        raise DataError("no input files given.")
    return pd.concat(frames, ignore_index=True)
