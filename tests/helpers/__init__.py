"""Helpers shared by the tests (and the benchmarks): real processes, pumps,
sandbox profiles, seccomp deny filters and a local HTTP origin server.

Import them as ``tests.helpers.<module>``: pyproject.toml puts the directory
holding ``tests/`` on sys.path, in the source tree and in the copies that
scripts/check-wheel and the unprivileged sandbox run make.
"""
