"""`relevo models register|list|show`."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from relevo.cli.output import console, err_console, fmt, handle_errors, print_json, table
from relevo.cli.state import state
from relevo.errors import InvalidInputError
from relevo.monitoring.reference import ReferenceProfile
from relevo.registry.flavors import flavor_names
from relevo.registry.holdout import ReferenceIsTrainingDataWarning
from relevo.registry.inputs import FeatureOrderWarning
from relevo.registry.types import ModelVersion

app = typer.Typer(help="Register, list and inspect model versions.", no_args_is_help=True)


def _parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"{option} expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


@app.command("register")
@handle_errors
def register(
    name: str = typer.Argument(..., help="Model name, e.g. churn."),
    path: Path = typer.Argument(..., help="The artifact: a file, or an MLflow model folder."),
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="Training/reference data (.csv, .parquet, .jsonl)."
    ),
    target: str | None = typer.Option(None, "--target", help="The label column in --reference."),
    flavor: str | None = typer.Option(
        None, "--flavor", help=f"Override detection: {', '.join(flavor_names())}."
    ),
    description: str = typer.Option("", "--description", "-d", help="Free text."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE, repeatable."),
    metric: list[str] = typer.Option([], "--metric", help="NAME=NUMBER, repeatable."),
    features: str | None = typer.Option(
        None,
        "--features",
        help="The model's input columns in the order it expects them: a,b,c "
        "(needed for a model fitted on an array whose inputs are not all the other columns).",
    ),
    exclude: str | None = typer.Option(
        None, "--exclude", help="Reference columns that are not inputs (ids, timestamps): a,b."
    ),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        help="A type a skops file may build beyond skops' safe defaults, repeatable "
        "(building it can run code: only types you know).",
    ),
    training: Path | None = typer.Option(
        None,
        "--training",
        help="The data the model was fitted on: a warning if --reference is that data "
        "(a held-out split is the better reference).",
    ),
    compile_: str | None = typer.Option(
        None,
        "--compile",
        help="Serve a compiled form: onnx (a scikit-learn model whose inputs are all numbers; "
        "needs relevo[onnx]). Kept only when it answers like the model on every reference row "
        "(within 1e-6).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a fitted model as the next immutable version of NAME."""
    tags = _parse_pairs(tag, "--tag")
    metrics_raw = _parse_pairs(metric, "--metric")
    try:
        metrics = {k: float(v) for k, v in metrics_raw.items()}
    except ValueError:
        raise InvalidInputError(f"--metric values must be numbers, got {metrics_raw}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FeatureOrderWarning)
        warnings.simplefilter("always", ReferenceIsTrainingDataWarning)
        version = state.relevo().registry.register(
            name,
            path,
            reference,
            target=target,
            flavor=flavor,
            description=description,
            tags=tags,
            metrics=metrics,
            features=_split(features),
            exclude=_split(exclude),
            trust=trust,
            training=training,
            compile=compile_,
        )
    # the input-order note goes with the result (stderr under --json); others as usual
    for w in caught:
        if issubclass(w.category, ReferenceIsTrainingDataWarning):
            (err_console if json_out else console).print(
                f"[yellow]Reference:[/] {escape(str(w.message))}", highlight=False
            )
        elif issubclass(w.category, FeatureOrderWarning):
            (err_console if json_out else console).print(
                f"[yellow]Input order:[/] {escape(str(w.message))}", highlight=False
            )
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if json_out:
        print_json(version.to_dict())
        return
    console.print(
        f"Registered [bold]{version.ref}[/] ({version.flavor}, {version.task}) "
        f"sha256 {version.artifact_sha256[:12]}…, {len(version.signature.columns)} input columns, "
        f"fed as {_input_text(version)}",
        highlight=False,
    )


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _input_text(v: ModelVersion) -> str:
    """How the model is fed, as `models register` and `models show` say it."""
    fmt_ = v.flavor_options.get("input")
    if v.flavor_options.get("compiled") == "onnx":
        worst = v.flavor_options.get("compiled_max_difference")
        if worst is None:
            return "a float64 array to its ONNX form (compiled)"
        return (
            f"a float64 array to its ONNX form (compiled; at most {worst:.2g} off on the reference)"
        )
    if fmt_ == "array":
        return "a float64 array (decided by rehearsal)"
    if fmt_ == "frame":
        return "a DataFrame (decided by rehearsal)"
    return "the flavor's default (registered before input rehearsal)"


@app.command("list")
@handle_errors
def list_models(
    name: str | None = typer.Argument(None, help="Only this model's versions."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List registered model versions."""
    versions = state.relevo().registry.list(name)
    if json_out:
        print_json([v.to_dict() for v in versions])
        return
    if not versions:
        others = sorted({v.name for v in state.relevo().registry.list()}) if name else []
        if others:  # a name with no version, where other models are registered
            console.print(
                f"No version of model {name!r} is registered; the registered models: "
                f"{', '.join(others)}"
            )
        else:
            console.print("No model is registered yet. Register one with: relevo models register")
        return
    console.print(
        table(
            "Models",
            ["model", "kind", "inputs", "created", "sha256", "tags"],
            [
                [
                    v.ref,
                    f"{v.flavor} {v.task}",  # one column: the table fits 80 columns
                    len(v.signature.columns),
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.artifact_sha256[:12],
                    _short_tags(v.tags),
                ]
                for v in versions
            ],
        )
    )


def _short_tags(tags: dict[str, str], most: int = 3, longest: int = 16) -> str:
    """Tags in a list's short form (`models show` has them whole): long values cut, at most
    `most` tags, so that the table fits 80 columns."""
    shown = [f"{k}={t if len(t) <= longest else t[: longest - 1] + '…'}" for k, t in tags.items()]
    more = f" (+{len(shown) - most})" if len(shown) > most else ""
    return ", ".join(shown[:most]) + more


@app.command("show")
@handle_errors
def show(
    ref: str = typer.Argument(..., help="NAME:VERSION (or NAME for the latest)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a version: metadata, input signature and reference profile."""
    registry = state.relevo().registry
    version = registry.get(ref)
    profile = registry.reference_profile(version)
    if json_out:
        print_json({**version.to_dict(), "reference_profile": profile.summary()})
        return
    console.print(Group(_meta_table(version), _signature_table(version), _profile_table(profile)))


def _meta_table(v: ModelVersion) -> Table:
    rows = [
        ["flavor", v.flavor],
        ["task", v.task + (f" (classes {v.classes})" if v.classes else "")],
        ["target", v.target or ""],
        ["created", v.created_at.isoformat(timespec="seconds")],
        ["sha256", v.artifact_sha256],
        ["size", f"{v.artifact_size:,} bytes"],
        ["description", v.description],
        ["tags", ", ".join(f"{k}={t}" for k, t in v.tags.items())],
        ["metrics", ", ".join(f"{k}={fmt(m)}" for k, m in v.metrics.items())],
        ["lineage", ", ".join(f"{k}={t}" for k, t in v.lineage.items())],
        ["libraries", ", ".join(f"{k} {t}" for k, t in v.library_versions.items())],
        ["input", _input_text(v)],
        ["input order", _ORDER.get(str(v.flavor_options.get("input_order")), "")],
    ]
    if "trusted_types" in v.flavor_options:
        rows.append(["trusted types", ", ".join(v.flavor_options["trusted_types"]) or "none"])
    return table(f"Model {v.ref}", ["field", "value"], rows)


_ORDER = {
    "model": "the model's own feature names",
    "operator": "--features",
    "reference": "the reference file's columns (the model has no feature names)",
}


def _signature_table(v: ModelVersion) -> Table:
    rows = []
    for c in v.signature.columns:
        if c.categories is not None:
            seen = ", ".join(c.categories[:6]) + (" …" if len(c.categories) > 6 else "")
        elif c.min is not None:
            seen = f"{fmt(c.min)} … {fmt(c.max)}"
        else:
            seen = ""
        rows.append([c.name, c.kind, "yes" if c.nullable else "no", seen])
    return table("Input signature", ["column", "type", "nullable", "seen"], rows)


def _profile_table(profile: ReferenceProfile) -> Table:
    rows = []
    for r in profile.summary():
        if r["type"] == "numeric":
            dist = f"mean {fmt(r['mean'])}, std {fmt(r['std']) or '-'}, {r['bins']} bins"
        else:
            dist = ", ".join(f"{t['value']} {t['share']:.0%}" for t in r["top"])
            dist = f"{r['categories']} categories: {dist}"
        rows.append([r["column"], r["count"], f"{r['missing_share']:.1%}", dist])
    return table("Reference profile", ["column", "rows", "missing", "distribution"], rows)
