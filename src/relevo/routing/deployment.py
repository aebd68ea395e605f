"""A deployment: a stable name (`churn`) bound to the model(s) that answer for it.

The champion (`model_name`, `model_version`) answers by default. An optional challenger, any
registered `NAME:VERSION`, runs beside it under a strategy: `shadow` (scored on a mirrored share
of rows, never answers) or `canary` (answers a share `weight` of rows, fixed or raised step by
step through a rollout plan). `previous_*` remembers the champion a promotion replaced, so a
rollback can bring it back; `promoted_at` and `bake_seconds` bound the bake period in which a
firing alert rolls back on its own. `revision` increases with every change, so servers notice
changes by comparing one number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from functools import cached_property
from typing import Any, Literal

Strategy = Literal["basic", "shadow", "canary"]
STRATEGIES: tuple[Strategy, ...] = ("basic", "shadow", "canary")

#: the progressive rollout's steps when none are given (percent of rows to the challenger)
DEFAULT_STEPS: tuple[int, ...] = (5, 25, 50, 100)
DEFAULT_MIN_STEP_ROWS = 500
DEFAULT_MIN_STEP_SECONDS = 300.0
DEFAULT_BAKE_SECONDS = 3600.0


class KeepType(Enum):
    """The 'leave it as it is' default of an optional setting."""

    KEEP = "keep"


#: a redeploy's "keep the current value" (of the routing key, say)
KEEP = KeepType.KEEP


def ref(name: str | None, version: int | None) -> str | None:
    """`NAME:VERSION`, or None when there is no such model."""
    return f"{name}:{version}" if name is not None and version is not None else None


def percent(share: float) -> str:
    """A share of rows as a percentage, as precise as it was set (four significant digits)
    and never in exponent notation: `5%`, `12.5%`, `0.5%`, `0.00001%` (a canary at 1e-7)."""
    return f"{Decimal(f'{share * 100:.4g}'):f}%"


@dataclass(frozen=True)
class Deployment:
    """The whole routing state of one deployment, as stored and as every replica applies it."""

    name: str
    model_name: str
    model_version: int
    updated_at: datetime
    strategy: Strategy = "basic"
    challenger_name: str | None = None
    challenger_version: int | None = None
    #: share of rows the canary challenger answers (0 without a canary)
    weight: float = 0.0
    key_column: str | None = None
    revision: int = 1
    #: the progressive rollout's steps in percent (empty: no progressive rollout)
    steps: tuple[int, ...] = ()
    #: index of the current step in `steps`
    step: int = 0
    min_step_rows: int = DEFAULT_MIN_STEP_ROWS
    min_step_seconds: float = DEFAULT_MIN_STEP_SECONDS
    step_started_at: datetime | None = None
    #: hold at every step until someone promotes
    manual: bool = False
    #: share of rows a shadow challenger scores
    mirror: float = 1.0
    previous_name: str | None = None
    previous_version: int | None = None
    promoted_at: datetime | None = None
    bake_seconds: float = DEFAULT_BAKE_SECONDS
    #: request fields beyond the signature and the key that the prediction log may keep
    log_extra: tuple[str, ...] = field(default=())

    @property
    def model_ref(self) -> str:
        return f"{self.model_name}:{self.model_version}"

    @property
    def champion_ref(self) -> str:
        return self.model_ref

    @property
    def challenger_ref(self) -> str | None:
        return ref(self.challenger_name, self.challenger_version)

    @cached_property
    def routing_salt(self) -> str:
        """What a canary's key buckets are hashed with: the deployment and its challenger (a new
        challenger reshuffles who goes first). Made once per state, not per request."""
        return f"{self.name}\x00{self.challenger_ref}"

    @property
    def models(self) -> tuple[tuple[str, int], ...]:
        """The (name, version) of the models it scores rows with now: the champion, then the
        challenger if it has one."""
        champion = (self.model_name, self.model_version)
        if self.challenger_name is None or self.challenger_version is None:
            return (champion,)
        return (champion, (self.challenger_name, self.challenger_version))

    @property
    def previous_ref(self) -> str | None:
        return ref(self.previous_name, self.previous_version)

    @property
    def has_challenger(self) -> bool:
        return self.challenger_name is not None and self.challenger_version is not None

    @property
    def progressive(self) -> bool:
        """A canary whose weight is raised step by step (as opposed to a fixed weight)."""
        return self.strategy == "canary" and bool(self.steps)

    @property
    def last_step(self) -> bool:
        return self.progressive and self.step >= len(self.steps) - 1

    @property
    def bake_until(self) -> datetime | None:
        """When the bake period after the last promotion ends (None: nothing to roll back to)."""
        if self.promoted_at is None or self.previous_ref is None:
            return None
        return self.promoted_at + timedelta(seconds=self.bake_seconds)

    def baking(self, now: datetime) -> bool:
        """Whether `now` falls in the bake period after the last promotion."""
        until = self.bake_until
        return until is not None and now < until

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the stored fields plus `model`, `challenger` and `previous`."""
        return {
            "name": self.name,
            "model": self.model_ref,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "strategy": self.strategy,
            "challenger": self.challenger_ref,
            "challenger_name": self.challenger_name,
            "challenger_version": self.challenger_version,
            "weight": self.weight,
            "key_column": self.key_column,
            "revision": self.revision,
            "steps": list(self.steps),
            "step": self.step,
            "min_step_rows": self.min_step_rows,
            "min_step_seconds": self.min_step_seconds,
            "step_started_at": _iso(self.step_started_at),
            "manual": self.manual,
            "mirror": self.mirror,
            "previous": self.previous_ref,
            "previous_name": self.previous_name,
            "previous_version": self.previous_version,
            "promoted_at": _iso(self.promoted_at),
            "bake_seconds": self.bake_seconds,
            "log_extra": list(self.log_extra),
            "updated_at": self.updated_at.isoformat(),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
