/* cffi declarations: building a sandbox plan and probing (csrc/sandbox_api.h).
 * The child hooks are internal to the spawn core (sandbox_internal.h). */

typedef struct os_sandbox_plan os_sandbox_plan;

#define OS_SANDBOX_NET_DENY ...
#define OS_SANDBOX_NET_ALLOWLIST ...

#define OS_SANDBOX_ACCESS_READ ...
#define OS_SANDBOX_ACCESS_WRITE ...
#define OS_SANDBOX_ACCESS_DEVICE ...

#define OS_SANDBOX_PROBE_USERNS ...
#define OS_SANDBOX_PROBE_LANDLOCK ...
#define OS_SANDBOX_PROBE_SECCOMP ...

os_sandbox_plan *os_sandbox_plan_new(void);
void os_sandbox_plan_free(os_sandbox_plan *plan);
int os_sandbox_plan_use_userns(os_sandbox_plan *plan, unsigned int uid, unsigned int gid,
                               int new_netns);
int os_sandbox_plan_add_readonly_bind(os_sandbox_plan *plan, const char *path);
int os_sandbox_plan_set_readonly_tree(os_sandbox_plan *plan);
int os_sandbox_plan_add_writable_mount(os_sandbox_plan *plan, const char *path);
int os_sandbox_plan_add_pinned_dir(os_sandbox_plan *plan, const char *path);
int os_sandbox_plan_set_private_ptys(os_sandbox_plan *plan);
int os_sandbox_plan_set_landlock(os_sandbox_plan *plan, int abi, int restrict_fs);
int os_sandbox_plan_add_path_rule(os_sandbox_plan *plan, const char *path, int access);
int os_sandbox_plan_set_network(os_sandbox_plan *plan, int mode, int proxy_port, int handoff_fd);
int os_sandbox_plan_inherited_fd(const os_sandbox_plan *plan);
int os_sandbox_plan_set_seccomp(os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                                int deny_metadata);

int os_sandbox_landlock_abi(void);
int os_sandbox_probe(int what, const char *scratch_dir, int *failed_step);
const char *os_sandbox_step_name(int step);
