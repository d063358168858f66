"""Choosing detector settings with labels, and measuring honestly what that choice is worth.

Settings picked because they score well on some labeled keys are only worth what they give
on keys they were not picked on. `leave_one_key_out` measures exactly that: for each key in
turn it picks the candidate with the best mean F1 on all the *other* keys and reports the
F1 that candidate gets on the held-out key. The mean of those held-out figures estimates what
the tuning procedure gives on a new key (a new machine); the in-sample mean of the candidate
picked on all keys is optimistic and is reported beside it, never instead of it.

The input is a table of F1 figures (candidates x keys) however they were computed, so this
module knows nothing of scorers, windows or Flink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class HeldOutResult:
    key: str
    chosen: str            # the candidate with the best mean F1 over the other keys
    others_f1: float       # that mean
    held_out_f1: float     # its F1 on the held-out key


def _check(f1_table: pd.DataFrame) -> None:
    if f1_table.shape[1] < 2:
        raise ValueError(f"leave-one-key-out needs at least 2 keys, got "
                         f"{list(f1_table.columns)}; add labeled data of another key.")
    if f1_table.empty:
        raise ValueError("no candidates to choose from; give at least one setting to try.")
    if f1_table.isna().to_numpy().any():
        raise ValueError("the F1 table has missing values; every candidate needs an F1 on "
                         "every key.")


def best_candidate(f1_table: pd.DataFrame) -> tuple[str, float]:
    """(candidate, mean F1) with the best mean over the table's keys; ties go to the
    candidate listed first, so the order of the candidates decides between equals.

    >>> table = pd.DataFrame({"a": [0.2, 0.4], "b": [0.6, 0.4]}, index=["x", "y"])
    >>> best_candidate(table)
    ('x', 0.4)
    """
    means = f1_table.mean(axis=1)
    best = int(np.argmax(means.to_numpy()))
    return str(means.index[best]), float(means.iloc[best])


def leave_one_key_out(f1_table: pd.DataFrame) -> list[HeldOutResult]:
    """For each key, the candidate chosen on the other keys and its F1 on that key.

    >>> table = pd.DataFrame({"a": [0.9, 0.1], "b": [0.2, 0.5], "c": [0.3, 0.6]},
    ...                      index=["x", "y"])
    >>> [(r.key, r.chosen, r.held_out_f1) for r in leave_one_key_out(table)]
    [('a', 'y', 0.1), ('b', 'x', 0.2), ('c', 'x', 0.3)]
    """
    _check(f1_table)
    results = []
    for key in f1_table.columns:
        chosen, others_f1 = best_candidate(f1_table.drop(columns=key))
        results.append(HeldOutResult(str(key), chosen, others_f1,
                                     float(f1_table.at[chosen, key])))
    return results
