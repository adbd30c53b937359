"""``python -m orchestrator_spawn`` runs the command-line front end."""

from __future__ import annotations

import sys

from orchestrator_spawn.cli import main

if __name__ == "__main__":
    sys.exit(main())
