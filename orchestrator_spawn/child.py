"""The Child handle: placeholder until the native spawn core lands."""

from __future__ import annotations

from orchestrator_spawn._unimplemented import Unimplemented, missing


class Child(Unimplemented):
    _feature = "Child"


async def kill_child_process_group(child: Child) -> None:
    missing("kill_child_process_group()")
