"""Production traffic written as bucket profiles, the way servers store it, for drift tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import orjson
import pandas as pd

from relevo.context import Relevo
from relevo.datasets import CHURN_FEATURES
from relevo.monitoring.buckets import BucketProfile
from relevo.registry.types import ModelVersion
from relevo.store.profiles import ProfileRow


def write_traffic(
    rv: Relevo,
    version: ModelVersion,
    model: object,
    frame: pd.DataFrame,
    start: datetime,
    *,
    deployment: str = "churn",
    minutes: int = 10,
    replicas: tuple[str, ...] = ("a", "b"),
) -> None:
    """`frame`'s rows scored by `model` and profiled in one-minute buckets from `start`,
    spread over `minutes` and `replicas`."""
    reference = rv.registry.reference_profile(version)
    scores = model.predict_proba(frame[CHURN_FEATURES])[:, 1]  # type: ignore[attr-defined]
    rows = []
    parts = np.array_split(np.arange(len(frame)), minutes * len(replicas))
    for i, idx in enumerate(parts):
        minute, replica = divmod(i, len(replicas))
        bucket = BucketProfile.empty(
            reference,
            deployment,
            version.name,
            version.version,
            "champion",
            start + timedelta(minutes=minute),
            60,
            seed=i,
        ).update(frame.iloc[idx], scores[idx], reference)
        rows.append(
            ProfileRow(
                deployment,
                version.name,
                version.version,
                "champion",
                bucket.start,
                60,
                replicas[replica],
                bucket.rows,
                orjson.dumps(bucket.to_dict()).decode(),
            )
        )
    rv.store.profiles.upsert(rows)
