/*
 * sandbox_internal.h: the plan layout and the Linux constants the sandbox
 * needs, shared by csrc/sandbox*.c only (not part of the cffi interface).
 *
 * Landlock and seccomp constants are spelled out here instead of taken from
 * <linux/landlock.h>: wheels are built against old kernel headers, and the
 * running kernel (probed at runtime) decides what is used.
 */
#ifndef OS_SANDBOX_INTERNAL_H
#define OS_SANDBOX_INTERNAL_H

#ifdef __linux__

#include <linux/filter.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "sandbox_api.h"
#include "sandbox_child.h"

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

#define OS_LL_CREATE_RULESET_VERSION (1U << 0)
#define OS_LL_RULE_PATH_BENEATH 1
#define OS_LL_RULE_NET_PORT 2

#define OS_LL_FS_EXECUTE (1ULL << 0)
#define OS_LL_FS_WRITE_FILE (1ULL << 1)
#define OS_LL_FS_READ_FILE (1ULL << 2)
#define OS_LL_FS_READ_DIR (1ULL << 3)
#define OS_LL_FS_REMOVE_DIR (1ULL << 4)
#define OS_LL_FS_REMOVE_FILE (1ULL << 5)
#define OS_LL_FS_MAKE_CHAR (1ULL << 6)
#define OS_LL_FS_MAKE_DIR (1ULL << 7)
#define OS_LL_FS_MAKE_REG (1ULL << 8)
#define OS_LL_FS_MAKE_SOCK (1ULL << 9)
#define OS_LL_FS_MAKE_FIFO (1ULL << 10)
#define OS_LL_FS_MAKE_BLOCK (1ULL << 11)
#define OS_LL_FS_MAKE_SYM (1ULL << 12)
#define OS_LL_FS_REFER (1ULL << 13)     /* ABI 2 */
#define OS_LL_FS_TRUNCATE (1ULL << 14)  /* ABI 3 */
#define OS_LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */

#define OS_LL_NET_BIND_TCP (1ULL << 0)    /* ABI 4 */
#define OS_LL_NET_CONNECT_TCP (1ULL << 1) /* ABI 4 */

#define OS_LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define OS_LL_SCOPE_SIGNAL (1ULL << 1)               /* ABI 6 */

struct os_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct os_ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct os_ll_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

struct os_sandbox_path_rule {
    char *path;
    int access; /* OS_SANDBOX_ACCESS_* */
};

/* Everything the child needs, prepared in the parent: only read in the child. */
struct os_sandbox_plan {
    /* User + mount (+ network) namespaces. */
    int use_userns;
    int new_netns;
    char uid_map[32]; /* "<uid> <uid> 1\n" */
    char gid_map[32];
    char **readonly_binds;
    int n_readonly_binds;
    char **pinned_dirs;
    int n_pinned_dirs;
    int readonly_tree;
    char **writable_mounts;
    int n_writable_mounts;
    int private_ptys;

    /* Landlock. */
    int landlock_abi; /* 0: no Landlock */
    int landlock_restrict_fs;
    struct os_sandbox_path_rule *path_rules;
    int n_path_rules;

    /* Network. */
    int net_mode;
    int proxy_port;
    int handoff_fd; /* -1: none */

    /* seccomp (built in the parent, installed by os_sandbox_child_seal). */
    struct sock_filter *filter;
    unsigned short filter_len;
};

/* The child sequence of os_sandbox_child_enter, reporting the failing step. */
int os_sandbox_enter_steps(const struct os_sandbox_plan *plan, int *failed_step);

/* The probe's child (sandbox_child.c): runs the probe `what` and exits 0, or
 * reports (step, positive errno) over fd and exits 127. */
__attribute__((noreturn)) void os_sandbox_probe_child(int what, const struct os_sandbox_plan *plan,
                                                      const char *scratch_dir, int fd);

/* Single steps, shared with the probes. 0 or -errno. */
int os_sandbox_bind_readonly(const char *path);
int os_sandbox_loopback_up(void);

/* Builds plan->filter (parent side). Returns 0 or -errno. */
int os_sandbox_build_filter(struct os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                            int deny_metadata);

/* The new mount API (Linux >= 5.2 / 5.12); numbers are the same on every
 * architecture. */
#ifndef __NR_open_tree
#define __NR_open_tree 428
#define __NR_move_mount 429
#define __NR_fsopen 430
#define __NR_fsconfig 431
#define __NR_fsmount 432
#define __NR_fspick 433
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#define OS_OPEN_TREE_CLONE 1U
#define OS_AT_RECURSIVE 0x8000
#define OS_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define OS_MOUNT_ATTR_RDONLY 0x00000001ULL

struct os_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* The most writable mounts a plan may keep (the child holds their clones in
 * a stack array). */
#define OS_SANDBOX_MAX_WRITABLE_MOUNTS 64

/* Makes the whole mount tree read-only except plan->writable_mounts (child
 * side; needs the plan's mount namespace). 0 or -errno. */
int os_sandbox_readonly_tree(const struct os_sandbox_plan *plan);

/* Mounts a new devpts instance on /dev/pts. 0 or -errno. */
int os_sandbox_private_ptys(void);

/* Landlock rights of an ABI version: all filesystem rights it handles. */
uint64_t os_sandbox_ll_fs_rights(int abi);

#endif /* __linux__ */
#endif
