"""Build script: the C core is a cffi out-of-line API-mode extension.

All metadata lives in pyproject.toml; this file only wires the cffi builder in.
"""

from setuptools import setup

setup(cffi_modules=["orchestrator_spawn/_build.py:ffibuilder"])
