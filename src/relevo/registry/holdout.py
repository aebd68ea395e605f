"""Is the reference the training data? Monitoring thresholds and calibration learnt on the rows
a model was fitted on are optimistic (the model fits them better than it will fit anything
else), so a held-out split makes the better reference; registration warns otherwise."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: reference rows whose hashes are looked up among the training rows
SAMPLE_ROWS = 10_000
#: the share of sampled reference rows found in the training data that counts as "the same"
SAME_SHARE = 0.5


class ReferenceIsTrainingDataWarning(UserWarning):
    """The reference a model is registered with is (mostly) the data it was fitted on."""


def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row of `columns` (values compared as text: 1 and 1.0 differ)."""
    return pd.util.hash_pandas_object(frame[list(columns)].astype(str), index=False).to_numpy()


def training_share(
    reference: pd.DataFrame, training: pd.DataFrame, columns: Sequence[str], seed: int = 0
) -> float:
    """The share of (a sample of) the reference's rows that are rows of the training data."""
    missing = [c for c in columns if c not in training.columns]
    if missing or reference.empty or training.empty:
        return 0.0
    sample = reference
    if len(reference) > SAMPLE_ROWS:
        sample = reference.sample(SAMPLE_ROWS, random_state=seed)
    found = np.isin(row_hashes(sample, columns), row_hashes(training, columns))
    return float(found.mean())


def warn_if_training_data(
    reference: pd.DataFrame, training: pd.DataFrame, columns: Sequence[str]
) -> float:
    """Warn (`ReferenceIsTrainingDataWarning`) when most reference rows are training rows;
    returns the share found."""
    share = 1.0 if reference is training else training_share(reference, training, columns)
    if share >= SAME_SHARE:
        warnings.warn(
            ReferenceIsTrainingDataWarning(
                f"{share:.0%} of the reference rows are rows the model was trained on: drift "
                "thresholds and calibration learnt on training data are optimistic. Register "
                "with a held-out split (rows the model never saw) as --reference."
            ),
            stacklevel=3,
        )
    return share
