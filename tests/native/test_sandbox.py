"""The sandbox slice, ``orchestrator_spawn._native.sandbox`` (``csrc/sandbox*.c``),
called directly: the opaque plan object, the step names and the probes."""

from __future__ import annotations

import errno
import gc
import os
import sys
import weakref
from pathlib import Path

import pytest

from orchestrator_spawn import SpawnError, spawn
from orchestrator_spawn._native import sandbox as _native
from orchestrator_spawn._native.sandbox import SandboxPlan
from tests.helpers.sandbox import needs

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux sandbox backend"
)


def closed(plan: SandboxPlan) -> bool:
    # A call, so that type checkers do not narrow the property across close().
    return plan.closed


def test_the_plan_is_opaque_and_closes_once() -> None:
    plan = SandboxPlan()
    assert not closed(plan)
    assert "open" in repr(plan)
    assert plan.inherited_fd() == -1  # nothing to keep open yet
    plan.close()
    assert closed(plan)
    assert "closed" in repr(plan)
    plan.close()  # idempotent
    assert closed(plan)


def test_a_closed_plan_refuses_every_use_clearly(tmp_path: Path) -> None:
    plan = SandboxPlan()
    plan.close()
    for use in (
        plan.inherited_fd,
        plan.set_readonly_tree,
        plan.set_private_ptys,
        lambda: plan.add_readonly_bind(str(tmp_path)),
        lambda: plan.set_seccomp(deny_ip_sockets=True, allow_inet_only=False),
        lambda: plan.set_network(_native.SANDBOX_NET_DENY),
    ):
        with pytest.raises(ValueError, match="the sandbox plan is closed"):
            use()
    # A spawn given a closed plan refuses before anything is forked.
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="the sandbox plan is closed"):
        spawn(["/bin/sh", "-c", f'touch "{marker}"'], _sandbox_plan=plan)
    assert not marker.exists()


def test_the_plan_is_a_context_manager_and_is_freed_when_dropped() -> None:
    with SandboxPlan() as plan:
        assert not closed(plan)
    assert closed(plan)
    dropped = SandboxPlan()
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None


def test_a_path_with_a_nul_byte_is_refused_before_the_core_sees_it() -> None:
    with SandboxPlan() as plan, pytest.raises(ValueError, match="embedded NUL byte"):
        plan.add_path_rule("/tmp/a\0b", _native.SANDBOX_ACCESS_READ)


@linux_only
def test_a_refused_builder_step_is_an_oserror_naming_the_step() -> None:
    # A relative path is refused by the C builder (absolute paths only).
    with SandboxPlan() as plan, pytest.raises(OSError, match="path rule") as info:
        plan.add_path_rule("relative/path", _native.SANDBOX_ACCESS_READ)
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("[Errno 22] sandbox plan: path rule 'relative/path' failed:")


def test_step_names_come_from_the_core() -> None:
    steps = _native.SANDBOX_STEPS
    assert steps[1] == "fork"
    assert steps[11] == "seccomp filter"
    assert steps[16] == "mount a private devpts on /dev/pts"
    assert sorted(steps) == list(range(1, 17))


@linux_only
def test_a_failing_sandbox_step_is_a_sandbox_stage_spawn_error(tmp_path: Path) -> None:
    needs("userns")
    with SandboxPlan() as plan:
        plan.use_userns(os.geteuid(), os.getegid(), new_netns=True)
        plan.add_pinned_dir(str(tmp_path / "none"))
        marker = tmp_path / "ran"
        with pytest.raises(SpawnError) as info:
            spawn(["/bin/sh", "-c", f'touch "{marker}"'], _sandbox_plan=plan)
    assert info.value.stage == "sandbox"
    assert info.value.errno == errno.ENOENT
    assert not marker.exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no zombie left behind
