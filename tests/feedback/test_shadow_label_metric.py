"""The rollout gates' label metric for a shadow mirroring a share of rows: both models on the
very same predictions."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from sklearn.metrics import roc_auc_score

from relevo.datasets import CHURN_ID, CHURN_TARGET, make_churn
from relevo.feedback.labels import ingest
from relevo.feedback.service import label_metric
from relevo.routing.assign import mirror
from relevo.store.shadows import ShadowRow


def test_a_partly_mirrored_shadows_label_metric_takes_the_champion_on_the_mirrored_rows_only(
    rv, deployed, log_at, proba_of, churn_pipeline, churn_frame
):
    other = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    state = rv.deployments.deploy("churn", other.ref, strategy="shadow", mirror=0.3)
    frame = make_churn(600, seed=11)
    when = datetime.now(UTC)
    ids = log_at(frame, when)
    chosen = np.flatnonzero(mirror(state, frame[CHURN_ID].astype(str).tolist(), len(frame)))
    picked = chosen.tolist()
    p = proba_of(frame)

    def output(i: int) -> str:
        return orjson.dumps({"probability": float(p[i]), "label": int(p[i] >= 0.5)}).decode()

    rv.store.shadows.insert_many(
        [ShadowRow(ids[i], "churn", "churn", 2, when, output(i), None, 1.0) for i in picked]
    )
    ingest(rv, "churn", [(list(range(600)), ids, frame[CHURN_TARGET].tolist())])
    found = label_metric(rv, rv.deployments.get("churn"))
    assert found is not None
    champion, shadow = found
    # "for a shadow, on the very same predictions": an identical model must score identically
    assert shadow.rows == len(chosen)
    assert champion.rows == shadow.rows, (champion, shadow)
    assert champion.value == shadow.value
    truth = frame[CHURN_TARGET].to_numpy()[chosen]
    assert champion.value == pytest.approx(roc_auc_score(truth, p[chosen]))
