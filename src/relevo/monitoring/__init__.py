"""Monitoring: mergeable statistical profiles of reference and production data."""

from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import (
    KINDS,
    OTHER_CATEGORY,
    CategoricalProfile,
    ColumnProfile,
    DatasetProfile,
)

__all__ = [
    "KINDS",
    "OTHER_CATEGORY",
    "CategoricalProfile",
    "ColumnProfile",
    "DatasetProfile",
    "NumericProfile",
]
