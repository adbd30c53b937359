"""Runner entry points: placeholder until the runner layer lands."""

from __future__ import annotations

from typing import Any

from orchestrator_spawn._unimplemented import Unimplemented, missing


class CapturedChild(Unimplemented):
    _feature = "CapturedChild"


def spawn_with_runner(*args: Any, **kwargs: Any) -> Any:
    missing("spawn_with_runner()")


def spawn_with_runner_and_capture(*args: Any, **kwargs: Any) -> Any:
    missing("spawn_with_runner_and_capture()")
