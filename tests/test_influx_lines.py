"""Line protocol for window scores."""

import numpy as np
import pandas as pd

from udfs.influx_sink import escape_tag, to_line_protocol


def test_tags_are_escaped_and_timestamp_is_window_end():
    lines = to_line_protocol("scores", "host", pd.Series(["rack 1,a=b"]), pd.Series(["v 1"]),
                             np.array([1704067800000]),
                             pd.DataFrame({"score": [0.25], "is_anomaly": [False]}))
    assert lines == ["scores,host=rack\\ 1\\,a\\=b,model_version=v\\ 1 "
                     "score=0.25,is_anomaly=false 1704067800000"]


def test_non_finite_fields_are_left_out_but_the_point_stays():
    lines = to_line_protocol("s", "k", pd.Series(["a"]), pd.Series(["v"]), np.array([1]),
                             pd.DataFrame({"score": [0.5], "x__std": [np.nan]}))
    assert lines == ["s,k=a,model_version=v score=0.5 1"]


def test_floats_keep_full_precision():
    value = 0.1 + 0.2
    line = to_line_protocol("s", "k", pd.Series(["a"]), pd.Series(["v"]), np.array([1]),
                            pd.DataFrame({"score": [value]}))[0]
    assert float(line.split("score=")[1].split()[0]) == value


def test_backslash_in_tag():
    assert escape_tag("a\\b") == "a\\\\b"
