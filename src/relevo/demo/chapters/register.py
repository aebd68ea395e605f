"""Chapter: register the model as an immutable, versioned artifact with its reference data."""

from __future__ import annotations

from typing import Any

from relevo import __version__
from relevo.datasets import CHURN_TARGET
from relevo.demo.story import MODEL, SOURCE, Chapter, Demo, need
from relevo.demo.view import table


def run(demo: Demo) -> None:
    train = need(demo.train, "train")
    version = demo.rv.registry.register(
        MODEL,
        need(demo.model, "train"),
        train,
        target=CHURN_TARGET,
        description="Churn model trained by `relevo demo`.",
        tags={"source": SOURCE, "relevo": __version__},
        metrics={"roc_auc": float(demo.summary["auc"])},
        lineage={"data": f"make_churn({demo.options.train_customers}, seed={demo.options.seed})"},
    )
    demo.version = version
    demo.summary["model"] = version.ref
    demo.summary["version"] = version.version
    size_kb = version.artifact_size / 1024
    demo.view.say(
        f"Registered [bold]{version.ref}[/]: flavor {version.flavor}, task {version.task} "
        f"(classes {version.classes}), {size_kb:,.1f} KiB."
    )
    demo.view.say(
        f"sha256 {version.artifact_sha256[:12]}…  [dim](of the artifact, checked on every load; "
        f"`relevo models show {version.ref}` has it whole)[/]"
    )
    if version.version > 1:
        demo.view.say(
            f"[yellow]This home already held {MODEL}:{version.version - 1}[/], so this run's "
            f"model is version {version.version}: versions are immutable, never overwritten."
        )
    profile = demo.rv.registry.reference_profile(version.ref)
    rows = [_row(r, version.signature) for r in profile.summary()]
    demo.view.show(
        table(
            f"Input signature and reference profile ({len(train):,} training rows)",
            ["column", "type", "missing", "seen", "profile"],
            rows,
            right=["missing"],
        )
    )
    demo.view.say(
        "Requests are checked against this signature; the profile is what drift is measured "
        "against later."
    )


def _row(summary: dict[str, Any], signature: Any) -> list[str]:
    name = summary["column"]
    kind = signature[name].kind if name in signature else "output"
    missing = f"{summary['missing_share']:.1%}" if summary["missing_share"] else "-"
    if summary["type"] == "numeric":
        seen = f"{_num(summary['min'])} to {_num(summary['max'])}"
        typical = f"mean {_num(summary['mean'])} ± {_num(summary['std'])}"
    else:
        seen = f"{summary['categories']} categories"
        typical = ", ".join(f"{t['value']} {t['share']:.0%}" for t in summary["top"][:2])
    return [name, kind, missing, seen, typical]


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


CHAPTER = Chapter(
    key="register",
    title="Register",
    why="The model becomes churn:N: an immutable artifact, its input signature, a profile of "
    "its data.",
    run=run,
)
