"""Chapter: load the registered version exactly as the server will, and check its answers."""

from __future__ import annotations

import numpy as np

from relevo.datasets import CHURN_FEATURES, CHURN_ID
from relevo.demo.story import Chapter, Demo, need
from relevo.demo.view import table
from relevo.errors import IntegrityError

SAMPLE = 200


def run(demo: Demo) -> None:
    version = need(demo.version, "register")
    holdout = need(demo.holdout, "train")
    sample = holdout.sample(min(SAMPLE, len(holdout)), random_state=demo.options.seed)
    loaded = demo.rv.registry.load(version.ref)  # what the server does: sha256 check, then load
    positive = loaded.model.classes.index(version.positive_class) if loaded.model.classes else 1
    raw = loaded.model.predict(sample[CHURN_FEATURES])
    assert raw.probabilities is not None
    registered = raw.probabilities[:, positive]
    in_memory = need(demo.model, "train").predict_proba(sample[CHURN_FEATURES])[:, 1]
    gap = float(np.max(np.abs(registered - in_memory)))
    demo.summary["sample_max_difference"] = gap
    if not np.allclose(registered, in_memory):
        raise IntegrityError(
            f"{version.ref} as loaded from the registry answers differently from the model "
            f"that was trained (largest difference {gap:.3g}); it must not go to production"
        )
    rows = [
        [cid, f"{a:.4f}", f"{b:.4f}"]
        for cid, a, b in zip(sample[CHURN_ID][:3], in_memory[:3], registered[:3], strict=True)
    ]
    demo.view.show(
        table(
            None,
            ["customer", "trained model", f"registered {version.ref}"],
            rows,
            right=["trained model", f"registered {version.ref}"],
        )
    )
    demo.view.say(
        f"[green]Same answers[/] for all {len(sample)} sampled customers (largest difference "
        f"{gap:.1g}): what was registered is what was trained, so it can go to production."
    )


CHAPTER = Chapter(
    key="rehearse",
    title="Test on a sample before production",
    why="Load the registered version as the server will (sha256-checked) and compare its answers.",
    run=run,
)
