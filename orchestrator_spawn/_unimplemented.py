"""Placeholders for public names whose implementation has not landed yet.

Each raises ``NotImplementedError`` naming the missing feature, so nothing
pretends to work. This module disappears once every placeholder is replaced.
"""

from __future__ import annotations

from typing import Any, NoReturn


def missing(feature: str) -> NoReturn:
    raise NotImplementedError(f"orchestrator_spawn: {feature} is not implemented yet")


class Unimplemented:
    """Base for placeholder classes: constructing one raises."""

    _feature = "this feature"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        missing(self._feature)
