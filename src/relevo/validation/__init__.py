"""The pre-production validation gate (`relevo validate`): a version tested on a sample."""

from relevo.validation.gate import Bound, Check, Latency, ValidationReport, validate_version
from relevo.validation.metrics import METRICS, Metric

__all__ = [
    "METRICS",
    "Bound",
    "Check",
    "Latency",
    "Metric",
    "ValidationReport",
    "validate_version",
]
