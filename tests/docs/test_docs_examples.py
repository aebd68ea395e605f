"""Every ```python block of README.md and docs/*.md runs, as a script in a fresh folder and home.

What a block needs beyond itself (an earlier block, a running server, a DataFrame) is said in the
Markdown by a `<!-- test: needs ... -->` comment (see docblocks.py); no block is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docblocks import NEEDS, Block, block, blocks

import relevo
from relevo.server.background import BackgroundServer
from relevo.settings import Settings

EXAMPLES = blocks("python")

CUSTOMERS = """\
import relevo
from relevo.datasets import make_churn

customers = make_churn(50, seed=3, id_start=90_000).drop(columns="churned")
"""


def test_every_page_with_python_has_its_blocks_collected():
    names = {b.name for b in EXAMPLES}
    assert {"README.md#1", "README.md#2", "README.md#3", "registry.md#1", "serving.md#1"} <= names
    assert {"serving.md#2", "demo.md#1"} <= names


def script(example: Block, seen: tuple[str, ...] = ()) -> str:
    """The block's code after the code of the blocks it needs (each once, in order)."""
    parts = []
    for need in example.needs:
        if need == "customers":
            parts.append(CUSTOMERS)
        elif need not in NEEDS and need not in seen:
            parts.append(script(block(need), (*seen, need)))
    return "\n".join([*parts, example.code])


@pytest.fixture
def docs_server(churn_pipeline, churn_frame, tmp_path: Path) -> Iterator[str]:
    """A relevo server (SQLite store) with the churn pipeline deployed as `churn`; host:port."""
    home = tmp_path / "server-home"
    with relevo.Relevo(home=home) as rv:
        version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
        rv.deployments.deploy("churn", version.ref, key="customer_id")
    server = BackgroundServer(Settings(home=home))
    url = server.start()
    try:
        yield url.removeprefix("http://")
    finally:
        server.stop()


@pytest.mark.parametrize("example", EXAMPLES, ids=[b.name for b in EXAMPLES])
def test_example_runs(example: Block, tmp_path: Path, request: pytest.FixtureRequest):
    code = script(example)
    if "server" in example.needs:
        assert "127.0.0.1:8000" in code, f"{example.name} needs a server but names none"
        code = code.replace("127.0.0.1:8000", request.getfixturevalue("docs_server"))
    path = tmp_path / "example.py"
    path.write_text(code)
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"RELEVO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, f"{example.name} failed:\n{result.stderr}"
    if "print(" in example.code:
        assert result.stdout.strip(), f"{example.name} printed nothing"
