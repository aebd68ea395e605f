"""The image's install steps give a working server: the Dockerfile's own scripts run here in a
clean virtual environment, with the extras the Dockerfile asks for; and a `relevo containerize`
context's build steps bake a model that answers. (No container engine runs images here.)"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"

TRAIN = """
import sys
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.compose import make_column_transformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler
import relevo
from relevo.datasets import make_churn

frame = make_churn(800, seed=3)
numeric = ["age", "tenure_months", "monthly_charges", "support_calls"]
categorical = ["contract", "payment_method"]
model = make_pipeline(
    make_column_transformer(
        (StandardScaler(), numeric), (OneHotEncoder(handle_unknown="ignore"), categorical)
    ),
    LogisticRegression(max_iter=500),
).fit(frame[numeric + categorical], frame["churned"])
rv = relevo.Relevo(home=sys.argv[1])
version = rv.registry.register(
    "churn", model, frame[["customer_id", *numeric, *categorical, "churned"]],
    target="churned", exclude=["customer_id"],
)
print(version.ref)
"""

ROW = {
    "customer_id": "c-1",
    "age": 41,
    "tenure_months": 7,
    "monthly_charges": 80.5,
    "support_calls": 3,
    "contract": "month-to-month",
    "payment_method": "credit_card",
}


def _dockerfile_arg(name: str) -> str:
    text = (ROOT / "Dockerfile").read_text()
    found = re.findall(rf"^ARG {name}=(\S*)$", text, re.M)
    assert found, f"the Dockerfile declares no ARG {name}"
    assert len(set(found)) == 1, f"the stages disagree on {name}: {found}"
    return found[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with relevo installed by the image's own scripts."""
    base = tmp_path_factory.mktemp("image")
    extras = _dockerfile_arg("RELEVO_EXTRAS")
    text = (ROOT / "Dockerfile").read_text()
    # the Dockerfile runs exactly these two scripts with its RELEVO_EXTRAS
    assert 'build-wheels.sh /src /wheels "${RELEVO_EXTRAS}"' in text
    assert 'sh /install.sh /wheels "${RELEVO_EXTRAS}"' in text
    wheels = base / "wheels"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        ["sh", str(DOCKER / "build-wheels.sh"), str(ROOT), str(wheels), extras],
        check=True,
        env=env,
        capture_output=True,
    )
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["sh", str(DOCKER / "install.sh"), str(wheels), extras],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip().endswith("relevo 0.1.0"), done.stdout[-500:]
    return env_dir


def _env(venv: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("RELEVO_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["RELEVO_HOME"] = str(home)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(venv: Path) -> Iterator:
    started: list[subprocess.Popen] = []

    def start(home: Path) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            [str(venv / "bin" / "relevo"), "serve", "--port", str(port)],
            env=_env(venv, home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.stdout else "died")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not become ready")

    yield start
    for proc in started:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run(venv: Path, home: Path, *args: str) -> str:
    done = subprocess.run(
        args, env=_env(venv, home), capture_output=True, text=True, timeout=300, cwd=home.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _answers(url: str) -> dict:
    assert httpx.get(f"{url}/healthz").status_code == 200
    answer = httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": [ROW]})
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    return prediction


def test_the_image_install_steps_give_a_working_server(venv, serve, tmp_path):
    # relevo is imported from the clean environment, not from this checkout
    where = _run(
        venv,
        tmp_path,
        str(venv / "bin" / "python"),
        "-c",
        "import relevo, psycopg; print(relevo.__file__)",
    )
    assert where.startswith(str(venv))
    home = tmp_path / "home"
    home.mkdir()
    assert _run(venv, home, str(venv / "bin" / "python"), "-c", TRAIN, str(home)).strip() == (
        "churn:1"
    )
    _run(venv, home, "relevo", "deploy", "churn", "churn:1")
    prediction = _answers(serve(home))
    assert prediction["model"] == "churn:1"
    assert 0.0 <= prediction["probability"] <= 1.0


def test_a_containerize_context_bakes_a_model_that_answers(venv, serve, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _run(venv, source, str(venv / "bin" / "python"), "-c", TRAIN, str(source))
    _run(venv, source, str(venv / "bin" / "python"), "-c", TRAIN, str(source))  # churn:2
    context = tmp_path / "context"
    _run(venv, source, "relevo", "containerize", "churn:2", "--output", str(context))

    # the context's build steps, as a container engine would run them: COPY the bundle to
    # where the Dockerfile puts it, then every RUN line, in a home that knows no model yet
    image_root = tmp_path / "image"
    image_home = tmp_path / "image-home"
    image_home.mkdir()
    steps = (context / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (?:--chown=\S+ )?(\S+) (\S+)$", steps, re.M)
    assert copies == [("bundle", "/opt/relevo/bundle")]
    runs = re.findall(r"^RUN (.+)$", steps, re.M)
    assert runs, steps
    for run in runs:
        argv = [
            str(image_root / a.lstrip("/")) if a.startswith("/opt/relevo") else a
            for a in shlex.split(run)
        ]
        if not (image_root / "opt/relevo/bundle").exists():
            shutil.copytree(context / "bundle", image_root / "opt/relevo/bundle")
        _run(venv, image_home, *argv)
    prediction = _answers(serve(image_home))
    assert prediction["model"] == "churn:2"  # the version keeps its number in the image
