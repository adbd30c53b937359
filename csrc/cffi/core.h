/* cffi declarations: the version handshake (csrc/core_api.h).
 *
 * Every file of csrc/cffi/ is cdef text for csrc/build.py, not a C header:
 * it declares only what orchestrator_spawn/_native calls, and "..." lets
 * the compiler fill in a constant's value from the real header. cffi checks
 * each declaration against the real header when it compiles the module. */

int os_core_version(void);
