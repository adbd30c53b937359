"""A small C program, built by the tests that need it, that runs a command
under a seccomp filter making chosen system calls fail: the policies of
container runtimes and locked-down hosts, for real, without a container.

    helper --deny NR:ERRNO[:ARG0_MASK] ... -- PROGRAM ARGS...

Each rule makes system call NR (x86_64 numbers) fail with ERRNO; with
ARG0_MASK, only when its first argument has one of those bits set (clone's
flags, say). Everything else is allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = r"""
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define ARG0_LOW offsetof(struct seccomp_data, args[0]) /* little endian */

int main(int argc, char **argv)
{
    struct sock_filter prog[256];
    int n = 0, i = 1;

    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                             offsetof(struct seccomp_data, arch));
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                             offsetof(struct seccomp_data, nr));
    for (; i + 1 < argc && strcmp(argv[i], "--deny") == 0 && n < 240; i += 2) {
        char *end;
        unsigned long nr = strtoul(argv[i + 1], &end, 10);
        unsigned long err = strtoul(end + 1, &end, 10);
        unsigned long mask = *end == ':' ? strtoul(end + 1, NULL, 0) : 0;
        if (mask == 0) {
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err);
        } else {
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 4);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LOW);
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                                     offsetof(struct seccomp_data, nr));
        }
    }
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc)
        return 124;
    struct sock_fprog program = {(unsigned short)n, prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0)
        return 125;
    execv(argv[i + 1], argv + i + 1);
    return 126;
}
"""

# x86_64 system call numbers and flags the tests deny.
NR_CLONE = 56
NR_UNSHARE = 272
NR_CLONE3 = 435
NR_CLOSE_RANGE = 436
CLONE_NEWUSER = 0x10000000


def build(directory: Path) -> Path:
    """The helper, built into ``directory``; skips the test where it cannot be."""
    if os.uname().sysname != "Linux" or os.uname().machine != "x86_64":
        pytest.skip("the seccomp helper's filter is for x86_64 Linux")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the seccomp helper")
    (directory / "seccomp_helper.c").write_text(SOURCE)
    helper = directory / "seccomp_helper"
    subprocess.run([compiler, "-o", str(helper), str(directory / "seccomp_helper.c")], check=True)
    return helper


def deny(*rules: tuple[int, int] | tuple[int, int, int]) -> list[str]:
    """The helper's arguments for ``rules`` of (nr, errno[, arg0 mask])."""
    args = []
    for rule in rules:
        args += ["--deny", ":".join(str(part) for part in rule)]
    return args
