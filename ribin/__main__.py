"""``python -m ribin`` runs the command-line interface."""

from ribin.cli import main

main()
