"""Fixtures of the feedback tests: a deployed churn model and predictions logged at chosen
times (the log's own rows, written through the store as the prediction log writes them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from relevo.datasets import CHURN_FEATURES, CHURN_ID
from relevo.serving.ids import new_ids

Logger = Callable[..., list[str]]


@pytest.fixture
def deployed(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key=CHURN_ID)
    return version


@pytest.fixture
def log_at(rv, churn_pipeline) -> Logger:
    """`log_at(frame, when, spread=timedelta(0), model="churn:1", role="champion")`: score
    `frame` with the churn pipeline and store its predictions as made from `when` on, spread
    evenly over `spread`; returns their ids in row order."""

    def log(
        frame: pd.DataFrame,
        when: datetime,
        spread: timedelta = timedelta(0),
        model: str = "churn:1",
        role: str = "champion",
        deployment: str = "churn",
    ) -> list[str]:
        p = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
        ids = new_ids(len(frame))
        name, version = model.split(":")
        step = spread / max(len(frame), 1)
        records = frame[CHURN_FEATURES].astype(object).where(frame[CHURN_FEATURES].notna(), None)
        rows = []
        for i, (pid, feats) in enumerate(zip(ids, records.to_dict("records"), strict=True)):
            out = {"probability": float(p[i]), "label": int(p[i] >= 0.5)}
            rows.append(
                (pid, deployment, name, int(version), when + step * i,
                 str(frame[CHURN_ID].iloc[i]), orjson.dumps(feats).decode(),
                 orjson.dumps(out).decode(), 1.0, role)
            )  # fmt: skip
        rv.store.predictions.insert_many(rows)
        return ids

    return log


@pytest.fixture
def proba_of(churn_pipeline) -> Callable[[pd.DataFrame], np.ndarray]:
    """The churn pipeline's P(churn) for the rows of a frame."""

    def proba(frame: pd.DataFrame) -> np.ndarray:
        return churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]

    return proba
