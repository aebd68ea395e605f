"""Data and prediction drift: tests on mergeable profiles, reports, and the library call.

`compare(reference, current, config)` judges a current `DatasetProfile` against a baseline on
the same bins; `drift(reference_df, current_df)` (exported as `relevo.drift`) does the same
from two DataFrames. Both return a `DriftReport` (`.features`, `.prediction`,
`.multivariate`, `.drifted_features`, `.drifted_share`, `.dataset_drift`, `.to_dict()`,
`.to_html()`). Which test a column gets, and its threshold, is a `DriftConfig`.
"""

from relevo.monitoring.drift.compare import column_drift, compare
from relevo.monitoring.drift.config import ColumnConfig, DriftConfig
from relevo.monitoring.drift.frames import drift
from relevo.monitoring.drift.report import DriftReport, FeatureDrift

__all__ = [
    "ColumnConfig",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "column_drift",
    "compare",
    "drift",
]
