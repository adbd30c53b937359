"""spawn(): placeholder until the native spawn core lands."""

from __future__ import annotations

import subprocess
from typing import Any

from orchestrator_spawn._unimplemented import Unimplemented, missing

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


class ResourceLimits(Unimplemented):
    _feature = "ResourceLimits"


def spawn(argv: Any, **kwargs: Any) -> Any:
    missing("spawn()")
