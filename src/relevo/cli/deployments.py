"""`relevo deployments` (and `relevo status` without a name): every deployment, one row each.

The table is built from `COLUMNS`, a list of (header, cell) pairs: a new piece of deployment
state (a challenger, a traffic split) becomes a column by adding one pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from relevo.cli.output import console, handle_errors, print_json, share, table
from relevo.cli.state import state
from relevo.context import Relevo
from relevo.routing.deployment import Deployment
from relevo.routing.evaluator import current_decision
from relevo.routing.stats import arms, shadow_comparison

Cell = Callable[[Deployment, int], object]

#: header and cell of each column; the int is the deployment's count of logged predictions
#: (`relevo status NAME` has the rest: when it changed, the rollout step, numbers per model; the
#: list stays within 80 columns)
COLUMNS: list[tuple[str, Cell]] = [
    ("deployment", lambda dep, _logged: dep.name),
    ("model", lambda dep, _logged: dep.model_ref),
    ("strategy", lambda dep, _logged: _strategy(dep)),
    ("challenger", lambda dep, _logged: dep.challenger_ref or "-"),
    ("key", lambda dep, _logged: dep.key_column or "-"),
    ("rev", lambda dep, _logged: dep.revision),
    ("logged", lambda dep, logged: f"{logged:,}"),
]

#: columns shown only when some deployment has something in them
OPTIONAL = frozenset({"challenger", "key"})


def _strategy(dep: Deployment) -> str:
    """The strategy with its share: `canary 10%`, `shadow 20%` (mirrored), `basic`."""
    if dep.strategy == "canary":
        return f"canary {share(dep.weight)}"
    if dep.strategy == "shadow" and dep.mirror < 1.0:
        return f"shadow {share(dep.mirror)}"
    return dep.strategy


def status_data(rv: Relevo, dep: Deployment) -> dict[str, Any]:
    """A deployment's state with its rows, errors and latency per model."""
    return {
        **dep.to_dict(),
        "predictions_logged": rv.store.predictions.count(dep.name),
        "models": [arm.to_dict() for arm in arms(rv.store, dep)],
        "shadow": shadow_comparison(rv.store, dep),
        "decision": _decided(rv, dep),
    }


def _decided(rv: Relevo, dep: Deployment) -> dict[str, Any] | None:
    decision = current_decision(rv, dep)
    return decision.to_dict() if decision is not None else None


def _with_counts(rv: Relevo) -> list[tuple[Deployment, int]]:
    return [(dep, rv.store.predictions.count(dep.name)) for dep in rv.deployments.list()]


def show_all(json_out: bool) -> None:
    """Print every deployment: a table, or a JSON list (`predictions_logged` added to each)."""
    rows = _with_counts(state.relevo())
    if json_out:
        rv = state.relevo()
        print_json([status_data(rv, dep) for dep, _logged in rows])
        return
    if not rows:
        console.print(
            "No deployment yet. Serve a registered model with: relevo deploy NAME MODEL:VERSION"
        )
        return
    cells: list[list[Any]] = [[cell(dep, logged) for _, cell in COLUMNS] for dep, logged in rows]
    # a column that says "-" on every row (no challenger anywhere, no routing key) is left out:
    # the rest then fits 80 columns with long names and counts in the millions
    keep = [
        i
        for i, (header, _) in enumerate(COLUMNS)
        if header not in OPTIONAL or any(row[i] != "-" for row in cells)
    ]
    console.print(
        table(
            "Deployments",
            [COLUMNS[i][0] for i in keep],
            [[row[i] for i in keep] for row in cells],
        )
    )


@handle_errors
def deployments(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List every deployment: what it serves, its routing key and how much it logged."""
    show_all(json_out)
