"""The `relevo` command's entry point (and `python -m relevo`'s).

Loading the CLI imports pandas, SQLAlchemy and the rest before any command runs (about a
second): a Ctrl-C then ends it as one during a command does, with exit code 130 and no
traceback of whatever module was being imported.
"""

from __future__ import annotations


def main() -> None:
    try:
        from relevo.cli.main import main as run
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run()
