"""The command-line front end: placeholder until the spawn core lands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("orchestrator-spawn: the CLI is not implemented yet", file=sys.stderr)
    return 2
