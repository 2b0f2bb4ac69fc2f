"""C source of the kernel race's writer thread, compiled at run time by :mod:`.kernel_race`.

A Python thread cannot race the mover truly in parallel (the GIL), so the writer is a pthread
in C, pinned to its own CPU.  It increments a counter at the start of each page, ``counter++``
through a base pointer it re-reads before every increment (the forwarding pointer the mover
flips from ``src`` to ``dst``).  The source range is registered MISSING with
``UFFD_FEATURE_SIGBUS``: an access to a source page that has gone raises SIGBUS instead of
sleeping in the kernel.  The handler waits until the mover has flipped the pointer (bounded by
a deadline) and ``siglongjmp``s back to the top of the increment, which then runs at ``dst``:
a faulted increment is restarted, never half-done, and never counted twice.  ``done`` counts
completed increments only (bumped after the store).
"""

C_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

struct race {
    volatile uint64_t target;     /* base the writer increments at: src, then dst (the flip) */
    uint64_t src_lo, src_hi;      /* SIGBUS inside [src_lo, src_hi) is ours */
    int64_t pages, page_size, writer_cpu, wait_ns;
    volatile int64_t go, stop;
    volatile int64_t ready, exited, done, faults, timed_out, cpu_err;
    uint64_t thread;
};

static __thread struct race *tls_race;
static __thread sigjmp_buf tls_jmp;
static struct sigaction old_bus;
static int installed;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    struct race *r = tls_race;
    uint64_t a = (uint64_t)(uintptr_t)si->si_addr;
    int64_t deadline;
    (void)sig; (void)uc;
    if (!r || a < r->src_lo || a >= r->src_hi) {
        /* not the writer on the source: restore the old disposition, the access re-faults */
        sigaction(SIGBUS, &old_bus, NULL);
        return;
    }
    r->faults++;
    deadline = now_ns() + r->wait_ns;
    while (r->target >= r->src_lo && r->target < r->src_hi) {   /* not flipped yet */
        if (r->stop || now_ns() > deadline) {
            r->timed_out = !r->stop;
            siglongjmp(tls_jmp, 2);
        }
        relax();
    }
    siglongjmp(tls_jmp, 1);
}

int race_install(void)
{
    struct sigaction sa;
    if (installed)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;   /* SIGBUS stays unblocked after siglongjmp */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old_bus) != 0)
        return errno;
    installed = 1;
    return 0;
}

int race_uninstall(void)
{
    if (!installed)
        return 0;
    installed = 0;
    return sigaction(SIGBUS, &old_bus, NULL) ? errno : 0;
}

static void *writer_main(void *arg)
{
    struct race *r = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)r->writer_cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        r->cpu_err = errno;
    tls_race = r;
    r->ready = 1;
    while (!r->go && !r->stop)
        relax();
    if (sigsetjmp(tls_jmp, 0) == 2)
        goto out;
    while (!r->stop) {
        int64_t i = r->done;
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)
            (r->target + (uint64_t)((i % r->pages) * r->page_size));
        uint64_t v = *p;          /* load: may SIGBUS -> restart */
        *p = v + 1;               /* store: may SIGBUS -> restart, nothing written */
        r->done = i + 1;          /* the increment is complete */
    }
out:
    tls_race = 0;
    r->exited = 1;
    return 0;
}

/* Start the writer; returns 0 once it is running and waiting for go, or an errno. */
int race_start(struct race *r, int64_t timeout_ns)
{
    pthread_t t;
    int64_t deadline = now_ns() + timeout_ns;
    int err = pthread_create(&t, 0, writer_main, r);
    if (err)
        return err;
    r->thread = (uint64_t)t;
    while (!r->ready) {
        if (now_ns() > deadline)
            return ETIMEDOUT;
        relax();
    }
    return 0;
}

/* Stop and reap the writer; ETIMEDOUT (thread left running, detached) if it does not exit. */
int race_join(struct race *r, int64_t timeout_ns)
{
    int64_t deadline = now_ns() + timeout_ns;
    r->stop = 1;
    while (!r->exited) {
        if (now_ns() > deadline) {
            pthread_detach((pthread_t)r->thread);
            return ETIMEDOUT;
        }
        relax();
    }
    return pthread_join((pthread_t)r->thread, 0);
}
"""
