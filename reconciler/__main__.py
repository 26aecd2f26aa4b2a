"""`python -m reconciler`: the command line."""

from reconciler.cli import run

run()
