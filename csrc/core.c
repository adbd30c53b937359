/* core.c: what every part of the C core shares. */
#include "core_api.h"

int os_core_version(void) { return OS_CORE_VERSION; }
