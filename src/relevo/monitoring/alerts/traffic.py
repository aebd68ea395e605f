"""The `no_predictions` provider: the deployment's volume in the current window against its own
history (`volume.py` judges), per replica where the profile buckets name replicas."""

from __future__ import annotations

from datetime import datetime, timedelta

from relevo.context import Relevo
from relevo.monitoring.alerts.config import rules_of_deployment
from relevo.monitoring.alerts.volume import RULE, Volumes, judge
from relevo.monitoring.signals import Signal
from relevo.store.alerts import Range

#: profile buckets last a minute; a shorter window is counted from the prediction log
BUCKET_S = 60.0


def signals(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    rule = rules_of_deployment(rv, deployment)[RULE]
    if not rule.enabled:
        return []
    window = timedelta(seconds=max(rule.param("window_s"), 1.0))
    current: Range = (now - window, now)
    seasonal = [
        (now - timedelta(days=d) - window, now - timedelta(days=d))
        for d in range(1, int(rule.param("history_days")) + 1)
    ]
    trailing = [
        (now - (i + 1) * window, now - i * window)
        for i in range(1, int(rule.param("trailing_windows")) + 1)
    ]
    repo = rv.store.alerts
    first = repo.first_row(deployment)
    ranges = [current, *seasonal, *trailing]
    oldest = min(since for since, _ in ranges)
    use_buckets = window.total_seconds() >= BUCKET_S and repo.has_buckets(deployment, oldest)
    counted = (
        repo.bucket_volumes(deployment, ranges)
        if use_buckets
        else repo.logged_volumes(deployment, ranges)
    )

    def known(i: int) -> dict[str, int] | None:
        since = ranges[i][0]
        return counted[i] if first is not None and since >= first else None

    volumes = Volumes(
        current=counted[0],
        seasonal=[known(1 + i) for i in range(len(seasonal))],
        trailing=[known(1 + len(seasonal) + i) for i in range(len(trailing))],
    )
    return judge(deployment, volumes, rule.param("alpha"), window.total_seconds())
