"""`python -m relevo` runs the CLI."""

from relevo.cli.launch import main

main()
