/* sandbox.c: placeholder until the Linux sandbox lands: every plan fails
 * closed with ENOSYS, so no sandboxed command can run unconfined. */
#include <errno.h>

#include "sandbox_api.h"

int os_sandbox_child_enter(const os_sandbox_plan *plan) { return -ENOSYS; }

int os_sandbox_child_seal(const os_sandbox_plan *plan) { return -ENOSYS; }
