"""The drift gate's measurement (issue 14): a canary challenger's prediction drift against its
OWN reference, not against the champion (a better model is meant to predict differently; the
comparison with the champion is reported by `relevo status`, never gated).

Read from the prediction log, like the other gates' numbers, so a step is judged on the rows
the challenger answered up to now, without waiting for profiles to be persisted: the latest
`MAX_ROWS` outputs since the challenger was deployed, profiled on the bins of the challenger's
reference prediction profile. The distance is the one the monitoring defaults use for large
windows: the Wasserstein distance in units of the reference's standard deviation for a score,
Jensen-Shannon for predicted labels (multiclass).
"""

from __future__ import annotations

from typing import Any

import orjson

from relevo.context import Relevo
from relevo.monitoring.drift.categorical import aligned_counts
from relevo.monitoring.drift.distances import jensen_shannon
from relevo.monitoring.drift.numeric import binned_wasserstein
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import CategoricalProfile
from relevo.monitoring.reference import PREDICTION
from relevo.routing.deployment import Deployment
from relevo.routing.gates import Measurement
from relevo.routing.stats import challenger_since

MAX_ROWS = 5000


def challenger_drift(rv: Relevo, state: Deployment) -> Measurement | None:
    """The canary challenger's prediction drift over its latest rows; None without a canary
    challenger or before it answered a row."""
    if state.strategy != "canary" or state.challenger_name is None:
        return None
    if state.challenger_version is None:
        return None
    since = challenger_since(rv.store, state)
    raw = rv.store.arms.outputs(
        state.name, state.challenger_name, state.challenger_version, "challenger", since, MAX_ROWS
    )
    if not raw:
        return None
    reference = rv.registry.reference_profile(f"{state.challenger_name}:{state.challenger_version}")
    column = reference.prediction.columns[PREDICTION]
    values = [_score(orjson.loads(text)) for text in raw]
    if isinstance(column, NumericProfile):
        value = binned_wasserstein(column, column.empty_like().update(values))
    else:
        assert isinstance(column, CategoricalProfile)
        _, ref, cur = aligned_counts(column, column.empty_like().update(values))
        value = jensen_shannon(ref, cur)
    return Measurement(float(value), len(raw))


def _score(output: Any) -> Any:
    """What the reference profiled of a logged output: P(positive), the value, or the label."""
    if isinstance(output, dict):
        for key in ("probability", "value", "label"):
            if key in output:
                return output[key]
    return None
