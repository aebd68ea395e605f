"""README's shell examples, pasted as a user would: in a fresh folder with the files README
says how to make, against a home of their own.

`relevo ...` runs in-process through the real command; `relevo serve` (which holds the terminal)
is a background server on a free port, `curl` is the same HTTP request made with httpx, and
`python3 NAME.py` runs the README python block that says it is NAME.py (its first line).
Every README block is either run here or named below with the reason it is not.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from docblocks import ROOT, block, blocks
from typer.testing import CliRunner

import relevo
from relevo.cli.main import app
from relevo.cli.state import state
from relevo.server.background import BackgroundServer
from relevo.settings import Settings

#: README's first block is the install and the test command: CI (.ci/run) runs them as written
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && relevo demo"


def commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines and quoted newlines joined, comments
    dropped."""
    out, pending = [], ""
    for line in code.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if argv:
            out.append(argv)
        pending = ""
    assert not pending, f"unfinished command: {pending}"
    return out


def curl(argv: list[str], address: str) -> httpx.Response:
    """`curl -s URL -H 'K: V' -d BODY` as httpx does it (POST when there is a body)."""
    url, headers, body = None, {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-H":
            key, _, value = next(args).partition(":")
            headers[key.strip()] = value.strip()
        elif arg == "-d":
            body = next(args)
        else:
            url = arg
    assert url is not None, argv
    url = "http://" + url.replace("localhost:8000", address).removeprefix("http://")
    if body is None:
        return httpx.get(url, headers=headers, timeout=30)
    return httpx.post(url, headers=headers, content=body, timeout=30)


def saved_as(name: str) -> str:
    """The README python block whose first line says it is saved as `name`."""
    (found,) = [b for b in blocks("python", ROOT / "README.md") if b.code.startswith(f"# {name}")]
    return found.code


def test_readme_shell_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_files = block("README.md#1")
    assert "model.joblib" in make_files.code
    (tmp_path / "make_files.py").write_text(make_files.code)
    made = subprocess.run(
        [sys.executable, "make_files.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    customers = pd.read_csv(tmp_path / "customers.csv")

    home = tmp_path / "home"
    env = {"RELEVO_HOME": str(home), "COLUMNS": "120"}
    monkeypatch.chdir(tmp_path)
    shell = blocks("bash", ROOT / "README.md")
    assert INSTALL in shell[0].code and 'pip install -e ".[dev]" && python -m pytest' in (
        shell[0].code
    )
    server: BackgroundServer | None = None
    ran: list[str] = []
    try:
        for example in shell[1:]:
            for argv in commands(example.code):
                ran.append(" ".join(argv[:3]))
                if argv[:2] == ["relevo", "serve"]:
                    server = BackgroundServer(Settings(home=home, log_flush_interval_s=0.05))
                    server.start()
                elif argv[0] == "relevo":
                    try:
                        result = CliRunner().invoke(app, argv[1:], env=env)
                    finally:
                        state.close()
                    assert result.exit_code == 0, f"{' '.join(argv)}:\n{result.output}"
                    if "--segments" in argv:  # README says what the 200 customers show
                        assert "no segment is significantly worse" in result.output
                        assert "the nearest:" in result.output, result.output
                elif argv[0] == "curl":
                    assert server is not None, "README calls curl before `relevo serve`"
                    answer = curl(argv, server.url.removeprefix("http://"))
                    assert answer.status_code == 200, answer.text
                    shown = next(ln for ln in example.code.splitlines() if ln.startswith("# {"))
                    expected = json.loads(shown[2:])["predictions"][0]
                    (got,) = answer.json()["predictions"]
                    assert got.keys() == expected.keys() and got["model"] == expected["model"]
                    assert got["probability"] == pytest.approx(expected["probability"], abs=1e-4)
                    server.stop()  # as Ctrl-C would: the log holds the answered row
                    server = None
                elif argv[0] == "python3" and len(argv) == 2:
                    (tmp_path / argv[1]).write_text(saved_as(argv[1]))
                    made = subprocess.run(
                        [sys.executable, argv[1]], cwd=tmp_path, capture_output=True, text=True
                    )
                    assert made.returncode == 0, made.stderr
                else:
                    pytest.fail(f"README runs {argv[0]!r}, which this test does not know")
    finally:
        if server is not None:
            server.stop()

    assert ran == [
        "relevo models register",
        "relevo models list",
        "relevo models show",
        "relevo models show",
        "relevo deploy churn",
        "relevo serve --port",
        "curl -s localhost:8000/v1/deployments/churn/predict",
        "relevo predict churn",
        "relevo export churn",
        "relevo status churn",
        "relevo deployments",
        "relevo models register",
        "relevo validate churn:2",
        "relevo deploy churn",
        "relevo deploy churn",
        "relevo promote churn",
        "relevo rollback churn",
        "relevo history churn",
        "relevo drift churn",
        "relevo alerts --all",
        "relevo alerts rules",
        "python3 make_labels.py",
        "relevo feedback churn",
        "relevo performance churn",
        "relevo containerize churn:1",
        "relevo db upgrade",
    ]
    # README: "relevo.drift(train_df.drop(columns="churned"), customers_df) flags nothing"
    train = pd.read_csv(tmp_path / "train.csv")
    assert relevo.drift(train.drop(columns="churned"), customers).drifted_features == []
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["customer_id"].tolist() == customers["customer_id"].tolist()
    assert set(scored["model"]) == {"churn:1"}
    logged = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(logged) == len(customers) + 1  # the batch and the one curl sent
    # the rollout block: shadow, canary, promote, rollback, each kept in the audit trail
    with relevo.Relevo(home=home) as rv:
        trail = [
            (e.action, e.state.get("model"), e.state.get("challenger"))
            for e in rv.deployments.history("churn")
        ]
        assert rv.deployments.get("churn").model_ref == "churn:1"
        # the feedback block: every customer's label joined to a logged prediction by key,
        # known when labels.csv says (the label delay ends there), uploaded after that
        assert rv.store.labels.count("churn") == len(customers)
        known = pd.read_csv(tmp_path / "labels.csv")["known_at"]
        stored = rv.store.labels.get(scored["id"].iloc[0])
        assert stored is not None
        assert stored["known_at"] == pd.Timestamp(known.iloc[0]).to_pydatetime()
        assert stored["received_at"] > stored["known_at"] > stored["predicted_at"]
    assert [a for a, _m, _c in trail][-4:] == ["deploy", "deploy", "promote", "rollback"], trail
    assert trail[-2][1] == "churn:2" and trail[-1][1] == "churn:1"
