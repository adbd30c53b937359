/*
 * lines_child.c: the child of the many-children pump benchmark.
 *
 * Prints the benchmark's 64 lines ("child N line I token=SECRETNxI trailing
 * text") to stdout, with no libc: a static x86_64 Linux program whose whole
 * life is one exec, one write and exit_group. On this project's 2-core VM
 * (nested virtualisation: a CPUID instruction costs ~4 us, a page fault
 * ~1.3 us) the start-up of glibc and ld.so makes printf(1) cost ~650 us of
 * CPU per run, against ~100 us for this program: 1,000 printf children are
 * ~0.65 s of CPU that neither contender can avoid, which on 2 cores hides
 * what the orchestrators themselves cost (spawning, piping, redacting,
 * writing). The benchmark builds this with `cc -static -nostdlib` and runs
 * both children; where it cannot be built, printf(1) only.
 */
typedef unsigned long u64;

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

static char *put(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_number(char *p, u64 n)
{
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (k)
        *p++ = digits[--k];
    return p;
}

/* Called from _start with the initial stack: argc, argv[0], argv[1], ... */
__attribute__((used, noreturn)) static void child_main(long *stack)
{
    static char buf[8192];
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    const char *q;
    u64 index = 0, i;
    long left, status = 0;
    char *p = buf;

    if (argc > 1)
        for (q = argv[1]; *q >= '0' && *q <= '9'; q++)
            index = index * 10 + (u64)(*q - '0');
    for (i = 0; i < 64; i++) {
        p = put(p, "child ");
        p = put_number(p, index);
        p = put(p, " line ");
        p = put_number(p, i);
        p = put(p, " token=SECRET");
        p = put_number(p, index);
        p = put(p, "x");
        p = put_number(p, i);
        p = put(p, " trailing text\n");
    }
    for (q = buf, left = p - buf; left > 0;) {
        long n = syscall3(1 /* write */, 1, (long)q, left);
        if (n == -4 /* EINTR */)
            continue;
        if (n < 0) {
            status = 1;
            break;
        }
        q += n;
        left -= n;
    }
    for (;;)
        syscall3(231 /* exit_group */, status, 0, 0);
}

__asm__(".globl _start\n"
        "_start:\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call child_main\n"
        "    hlt\n");
