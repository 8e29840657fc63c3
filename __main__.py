"""Entry point of `pulumi up`: see components/program.py."""

from components.program import program

program()
