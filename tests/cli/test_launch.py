"""A Ctrl-C while the `relevo` command is still loading (about a second of imports) ends it
as one during a command does: exit code 130, no traceback."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter in which importing the CLI is interrupted, as a Ctrl-C pressed during
# the imports would interrupt it (deterministic: no race with a real signal).
SCRIPT = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "relevo.cli.main":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from relevo.cli.launch import main
main()
"""


def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "models", "list"], capture_output=True, text=True
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_command_runs_through_the_launcher(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relevo", "--home", str(tmp_path), "models", "list", "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
