"""A model's NaN probability gives a row no label, in the API's answers and in batch scoring's
columns alike (argmax and `>= 0.5` would pick one on no evidence)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from relevo.registry.flavors.base import RawOutput
from relevo.serving.outputs import format_outputs, output_columns


def test_a_binary_nan_row_has_no_label_in_answers_and_columns():
    probs = np.array([[0.2, 0.8], [np.nan, np.nan], [0.9, 0.1]])
    raw = RawOutput(probabilities=probs)
    answers = format_outputs("binary", ["stays", "leaves"], raw)
    assert [a["label"] for a in answers] == ["leaves", None, "stays"]
    assert np.isnan(answers[1]["probability"])
    columns = output_columns("binary", ["stays", "leaves"], raw)
    assert columns["label"].tolist() == ["leaves", None, "stays"]
    # what a file gets: the same labels as the answers, an empty cell for the NaN row
    assert pd.Series(columns["label"]).isna().tolist() == [False, True, False]


def test_a_multiclass_row_with_a_nan_has_no_label_in_answers_and_columns():
    probs = np.array([[0.1, 0.7, 0.2], [np.nan, 0.5, 0.5], [0.6, 0.3, 0.1]])
    raw = RawOutput(probabilities=probs)
    answers = format_outputs("multiclass", ["a", "b", "c"], raw)
    assert [a["label"] for a in answers] == ["b", None, "a"]
    columns = output_columns("multiclass", ["a", "b", "c"], raw)
    assert columns["label"].tolist() == ["b", None, "a"]
    # rows without a NaN are labelled as before: the class of the largest probability
    assert columns["label"][[0, 2]].tolist() == [
        ["a", "b", "c"][k] for k in np.argmax(probs[[0, 2]], axis=1)
    ]
