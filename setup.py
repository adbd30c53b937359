"""Build script: the C core is a cffi out-of-line API-mode extension.

All metadata lives in pyproject.toml; this file wires the cffi builder in and
picks the wheel tag.

GIL builds: the extension is compiled against the stable ABI (cffi defines
``Py_LIMITED_API``, hence ``_core.abi3.so``), so one ``cp310-abi3`` wheel per
platform serves CPython 3.10 and every later version.

Free-threaded builds (``python3.14t``, ``Py_GIL_DISABLED``): the stable ABI
does not apply, so the extension is built for that one interpreter
(``csrc/build.py`` asks cffi for the full API) and the wheel
gets the interpreter's own tag, ``cp314-cp314t`` say. Tagging it ``abi3``
would let a GIL interpreter install a free-threaded binary.
"""

import sysconfig

from setuptools import setup

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

setup(
    cffi_modules=["csrc/build.py:ffibuilder"],
    options={} if FREE_THREADED else {"bdist_wheel": {"py_limited_api": "cp310"}},
)
