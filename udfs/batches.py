"""What the job's pandas UDFs share about the Arrow batches Flink hands them."""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def frame_of(names: Sequence[str], columns: Sequence[pd.Series]) -> pd.DataFrame:
    """A batch's columns (one Arrow batch: they share one index) as a frame named `names`,
    built from their arrays: pd.concat would align hundreds of indexes that are the same
    (about 8 ms of a 1,000-window batch of the scoring UDF's 229 columns).

    >>> frame_of(["a", "b"], [pd.Series([1, 2]), pd.Series(["x", "y"])]).to_dict("list")
    {'a': [1, 2], 'b': ['x', 'y']}
    """
    return pd.DataFrame({name: column.to_numpy() for name, column in zip(names, columns)},
                        index=columns[0].index)
