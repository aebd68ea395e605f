"""`relevo containerize`, `relevo models export|import` and `relevo db upgrade`: the doors
onto `relevo.container`, `relevo.registry.bundle` and the store's migrations."""

from __future__ import annotations

from pathlib import Path

import typer

from relevo.cli import rollout
from relevo.cli.output import console, handle_errors, print_json
from relevo.cli.state import state

db_app = typer.Typer(help="The store's database schema.", no_args_is_help=True)


@handle_errors
def containerize(
    model: str = typer.Argument(..., help="NAME:VERSION to bake into the image."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Folder to write the build context to (default: NAME-VERSION)."
    ),
    deployment: str | None = typer.Option(
        None, "--deployment", help="Deployment name the image serves (default: the model's)."
    ),
    extras: list[str] = typer.Option(
        [],
        "--extras",
        help="relevo extras the base image needs, e.g. postgres,xgboost "
        "(default: postgres and the flavor's).",
    ),
    base_image: str | None = typer.Option(
        None, "--base-image", help="The relevo server image to build from (default relevo:VERSION)."
    ),
    image: str | None = typer.Option(
        None, "--image", help="Tag of the image (default NAME:VERSION)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a Docker build context that bakes MODEL into the relevo server image."""
    from relevo.container import containerize as write_context

    rv = state.relevo()
    folder = output or Path(model.replace(":", "-"))
    ctx = write_context(
        rv.registry,
        model,
        folder,
        deployment=deployment,
        extras=extras,
        base_image=base_image,
        image=image,
    )
    if json_out:
        print_json(ctx.to_dict())
        return
    console.print(f"Wrote the build context of {ctx.model} to {ctx.path}", soft_wrap=True)
    console.print(
        f"The base image {ctx.base_image} must hold the extras {','.join(ctx.extras)}; from a "
        "checkout of relevo:",
        soft_wrap=True,
    )
    console.print(f"  {ctx.base_build_command}", soft_wrap=True, highlight=False)
    console.print("Then build the model's image:")
    console.print(f"  {ctx.build_command}", soft_wrap=True, highlight=False)


@handle_errors
def export_model(
    model: str = typer.Argument(..., help="NAME:VERSION to export."),
    output: Path = typer.Option(..., "--output", "-o", help="New or empty folder."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a version (artifact, record, reference profile) to a folder another store imports."""
    from relevo.registry.bundle import export_bundle

    version = export_bundle(state.relevo().registry, model, output)
    if json_out:
        print_json({"model": version.ref, "output": str(output)})
        return
    console.print(f"Exported {version.ref} to {output}", soft_wrap=True)


@handle_errors
def import_model(
    folder: Path = typer.Argument(..., help="A folder written by `relevo models export`."),
    deploy: str | None = typer.Option(
        None, "--deploy", help="Also deploy the version under this deployment name (basic)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register an exported version under its own NAME:VERSION (a no-op when it is there)."""
    from relevo.registry.bundle import import_bundle

    rv = state.relevo()
    version, added = import_bundle(rv.registry, folder)
    deployed = None
    if deploy is not None:
        current = rv.deployments.list()
        served = {d.name: d for d in current}
        if deploy not in served or served[deploy].champion_ref != version.ref:
            rv.deployments.deploy(
                deploy, version.ref, actor=rollout.actor(), reason=f"imported from {folder}"
            )
        deployed = deploy
    if json_out:
        print_json({"model": version.ref, "added": added, "deployment": deployed})
        return
    said = "Imported" if added else "Already registered:"
    console.print(f"{said} {version.ref}", soft_wrap=True)
    if deployed:
        console.print(f"Deployment {deployed} serves {version.ref}")


@db_app.command("upgrade")
@handle_errors
def upgrade(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Bring the database schema to this release (run once before a rollout; idempotent)."""
    from relevo.store.engine import head_revision

    rv = state.relevo()  # opening the store migrates it, under a lock several replicas share
    where = rv.store.display_url
    revision = head_revision()
    if json_out:
        print_json({"database": where, "revision": revision})
        return
    console.print(f"The schema of {where} is at revision {revision}", soft_wrap=True)


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    app.command("containerize")(containerize)
    models_app.command("export")(export_model)
    models_app.command("import")(import_model)
    app.add_typer(db_app, name="db")
