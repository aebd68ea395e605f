"""A deployment: a stable name (`churn`) bound to the model version(s) that answer for it.

The state is designed for the rollout strategies: `model_version` is the live (primary) version;
`candidate_version`, `strategy`, `weight` and `key_column` describe a shadow or canary rollout.
`revision` increases with every change, so servers notice changes by comparing one number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

Strategy = Literal["basic", "shadow", "canary"]


@dataclass(frozen=True)
class Deployment:
    name: str
    model_name: str
    model_version: int
    updated_at: datetime
    strategy: Strategy = "basic"
    candidate_version: int | None = None
    weight: float = 0.0
    key_column: str | None = None
    revision: int = 1

    @property
    def model_ref(self) -> str:
        return f"{self.model_name}:{self.model_version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = self.model_ref
        out["updated_at"] = self.updated_at.isoformat()
        return out
