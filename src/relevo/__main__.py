"""`python -m relevo` runs the CLI."""

from relevo.cli.main import main

main()
