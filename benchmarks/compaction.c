/* compaction.c: a heap-compaction emulation on the running kernel, for benchmarks/compaction.py.
 *
 * A compacting thread moves every page of a from-space into a MISSING-registered to-space, in
 * batches (1 page, 16 pages = 64 KiB, 512 pages = 2 MiB), with UFFDIO_MOVE or with UFFDIO_COPY
 * followed by MADV_DONTNEED of the source batch.  Meanwhile M mutator threads (0 or more) pick
 * pages at random (a fixed seed per thread) and read and write them at their to-space address;
 * a to-space page the compactor has not reached yet faults, and a fault-handling thread resolves
 * the fault the same way the compactor would (MOVE, or COPY + DONTNEED of that one page), then
 * wakes the mutator.  The compactor skips a page that is already there (EEXIST) or gone from the
 * from-space (ENOENT), and retries one that the kernel asks to retry (EAGAIN).  Prints one JSON
 * object per run.
 *
 * With RESOLVER `sigbus` (ART's concurrent compaction) the to-space is registered with
 * UFFD_FEATURE_SIGBUS instead: there is no handler thread; a mutator that touches a to-space page
 * not moved yet gets SIGBUS and moves (or copies) that one page itself in the signal handler, then
 * retries the access.
 *
 * A fault is counted for the latency figures only when the access really faulted: the handler
 * (or the SIGBUS handler) bumps a per-page counter before it resolves the fault, and the mutator
 * compares that counter before and after its access.
 *
 *   compaction compact  METHOD BATCH_PAGES HEAP_MIB MUTATORS [thread|sigbus]
 *   compaction perpage  METHOD PAGES [REPS]   (METHOD: move, copy, dontneed; median ns per page)
 *   compaction munmap   HEAP_MIB               (worst munmap wait during one MOVE of HEAP_MIB)
 *
 * Every run ends within WATCHDOG_S seconds (alarm) and dies with its parent (PR_SET_PDEATHSIG).
 *
 * Built by benchmarks/compaction.py with `cc -O2 -pthread`; Linux 6.8+ (UFFD_FEATURE_MOVE).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WATCHDOG_S 120
#ifndef UFFD_FEATURE_SIGBUS
#define UFFD_FEATURE_SIGBUS (1 << 7)
#endif
#ifndef UFFDIO_MOVE              /* headers older than Linux 6.8: the ABI from its uapi header */
#define UFFD_FEATURE_MOVE (1 << 16)
#define _UFFDIO_MOVE (0x05)
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
struct uffdio_move { __u64 dst, src, len, mode; __s64 move; };
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

static int uffd = -1;
static char *from, *to;
static size_t npages;
static int method_move;                 /* 1: UFFDIO_MOVE, 0: UFFDIO_COPY + MADV_DONTNEED */
static atomic_int done;                 /* handler: stop */
static atomic_int stop_mutators;
static atomic_long faults;
static long *lat_ns;                    /* one slot per mutator fault, filled in order */
static atomic_long nlat;
static atomic_int *fault_seen;          /* per to-space page: faults resolved on it so far */
static int use_sigbus;                  /* ART's way: mutators resolve their own fault */

#ifdef COMPACTION_LIBRARY
static jmp_buf *lib_err;                /* the library reports an error instead of exiting */
static char lib_msg[160];
const char *perpage_error(void) { return lib_msg; }
#endif

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void die(const char *what) {
#ifdef COMPACTION_LIBRARY
    snprintf(lib_msg, sizeof lib_msg, "%s: %s", what, strerror(errno));
    if (lib_err) longjmp(*lib_err, 1);
#endif
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

static void *map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    madvise(p, bytes, MADV_NOHUGEPAGE);        /* small pages: what the batches are made of */
    return p;
}

static void open_uffd(int sigbus) {
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = { .api = UFFD_API,
                              .features = UFFD_FEATURE_MOVE | (sigbus ? UFFD_FEATURE_SIGBUS : 0) };
    if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
}

static void register_missing(void *at, size_t bytes) {
    struct uffdio_register r = { .range = { (unsigned long)at, bytes }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &r)) die("UFFDIO_REGISTER");
}

/* One page: 0 when it is in the to-space afterwards (moved or copied now, or there already).
 * EEXIST: the to-space page is there (the other resolver was first); ENOENT (MOVE): the source is
 * gone, moved by the other resolver, so the destination is there; EAGAIN: retry. */
static int transfer_one(unsigned long d, unsigned long s, int wake) {
    for (int tries = 0; tries < 1000; tries++) {
        int r;
        if (method_move) {
            struct uffdio_move m = { .dst = d, .src = s, .len = PAGE, .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE };
            r = ioctl(uffd, UFFDIO_MOVE, &m);
        } else {
            struct uffdio_copy c = { .dst = d, .src = s, .len = PAGE, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
            r = ioctl(uffd, UFFDIO_COPY, &c);
        }
        if (r == 0 || errno == EEXIST || (method_move && errno == ENOENT)) return 0;
        if (errno != EAGAIN) return -1;
    }
    return -1;
}

/* Moves or copies pages [first, first + n) (COPY: then MADV_DONTNEED of their source).  A batch
 * that stops early (a page is there already, or EAGAIN) goes on one page at a time from where it
 * stopped.  Only async-signal-safe calls: the SIGBUS handler uses it. */
static int transfer(size_t first, size_t n, int wake) {
    unsigned long d = (unsigned long)to + first * PAGE, s = (unsigned long)from + first * PAGE;
    long done_bytes;
    if (method_move) {
        struct uffdio_move m = { .dst = d, .src = s, .len = n * PAGE,
                                 .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE };
        if (ioctl(uffd, UFFDIO_MOVE, &m) == 0) return 0;
        if (errno != EEXIST && errno != ENOENT && errno != EAGAIN) return -1;
        done_bytes = m.move > 0 ? m.move : 0;
    } else {
        struct uffdio_copy c = { .dst = d, .src = s, .len = n * PAGE, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
        int r = ioctl(uffd, UFFDIO_COPY, &c);
        if (r && errno != EEXIST && errno != EAGAIN) return -1;
        done_bytes = r == 0 ? (long)(n * PAGE) : (c.copy > 0 ? c.copy : 0);
    }
    for (size_t i = (size_t)done_bytes / PAGE; i < n; i++)
        if (transfer_one(d + i * PAGE, s + i * PAGE, wake)) return -1;
    if (!method_move && madvise((void *)s, n * PAGE, MADV_DONTNEED)) return -1;
    return 0;
}

static void *handler(void *arg) {
    (void)arg;
    struct pollfd p = { .fd = uffd, .events = POLLIN };
    while (!atomic_load(&done)) {
        if (poll(&p, 1, 10) <= 0) continue;
        struct uffd_msg msg;
        if (read(uffd, &msg, sizeof msg) != sizeof msg) continue;
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        size_t page = (msg.arg.pagefault.address - (unsigned long)to) / PAGE;
        atomic_fetch_add(&faults, 1);
        atomic_fetch_add(&fault_seen[page], 1);
        if (transfer(page, 1, 1)) die("transfer (fault handler)");
        /* the compactor may have filled it meanwhile: wake whoever waits on it anyway */
        struct uffdio_range r = { (unsigned long)to + page * PAGE, PAGE };
        ioctl(uffd, UFFDIO_WAKE, &r);
    }
    return NULL;
}

static atomic_long progress;            /* pages the compactor has finished (published) */

static void on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    unsigned long a = (unsigned long)si->si_addr;
    if (a < (unsigned long)to || a >= (unsigned long)to + npages * PAGE) {
        signal(SIGBUS, SIG_DFL);                      /* not ours: die of it */
        raise(SIGBUS);
        return;
    }
    size_t page = (a - (unsigned long)to) / PAGE;
    atomic_fetch_add(&faults, 1);
    atomic_fetch_add(&fault_seen[page], 1);
    if (transfer(page, 1, 0)) { signal(SIGBUS, SIG_DFL); raise(SIGBUS); }
    /* returning retries the access, which now finds the page */
}

static void *mutator(void *arg) {
    unsigned int seed = (unsigned int)(uintptr_t)arg * 2654435761u + 1;
    while (!atomic_load(&stop_mutators)) {
        size_t page = (size_t)rand_r(&seed) % npages;
        volatile char *p = to + page * PAGE + (seed % PAGE);
        int before = atomic_load(&fault_seen[page]);
        long t0 = now_ns();
        char v = *p;                              /* read, then write the object */
        *p = (char)(v + 1);
        long t1 = now_ns();
        if (atomic_load(&fault_seen[page]) != before) {   /* this access waited for a fault */
            long n = atomic_fetch_add(&nlat, 1);
            if (n < 1000000) lat_ns[n] = t1 - t0;
        }
    }
    return NULL;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int compact(const char *method, size_t batch, size_t heap_mib, int mutators, int sigbus) {
    use_sigbus = sigbus;
    method_move = strcmp(method, "move") == 0;
    npages = heap_mib * 1024 * 1024 / PAGE;
    from = map(npages * PAGE);
    to = map(npages * PAGE);
    for (size_t i = 0; i < npages; i++) from[i * PAGE] = (char)i;   /* the live heap */
    open_uffd(sigbus);
    register_missing(to, npages * PAGE);
    lat_ns = calloc(1000000, sizeof(long));
    fault_seen = calloc(npages, sizeof(atomic_int));
    if (!lat_ns || !fault_seen) die("calloc");
    if (sigbus) {
        struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, NULL)) die("sigaction");
    }
    pthread_t h, m[64];
    if (mutators > 64) mutators = 64;
    if (!sigbus && pthread_create(&h, NULL, handler, NULL)) die("pthread_create");
    for (int i = 0; i < mutators; i++)
        if (pthread_create(&m[i], NULL, mutator, (void *)(uintptr_t)(i + 1))) die("pthread_create");
    long t0 = now_ns();
    for (size_t first = 0; first < npages; first += batch) {
        size_t n = first + batch > npages ? npages - first : batch;
        if (transfer(first, n, !sigbus)) die(method_move ? "UFFDIO_MOVE" : "UFFDIO_COPY");
        atomic_store(&progress, (long)(first + n));
    }
    long t1 = now_ns();
    /* mutators first: one may wait in a fault that only the handler resolves */
    atomic_store(&stop_mutators, 1);
    for (int i = 0; i < mutators; i++) pthread_join(m[i], NULL);
    atomic_store(&done, 1);
    if (!sigbus) pthread_join(h, NULL);
    for (size_t i = 0; i < npages; i++)               /* every page made it, exactly once */
        if (to[i * PAGE] != (char)i && !mutators) { errno = EIO; die("to-space check"); }
    long n = atomic_load(&nlat) < 1000000 ? atomic_load(&nlat) : 1000000;
    qsort(lat_ns, (size_t)n, sizeof(long), cmp_long);
    long p50 = n ? lat_ns[n / 2] : 0, p99 = n ? lat_ns[(n * 99) / 100] : 0;
    printf("{\"mode\": \"compact\", \"resolver\": \"%s\", \"method\": \"%s\", \"batch_pages\": %zu, \"heap_mib\": %zu, "
           "\"mutators\": %d, \"seconds\": %.6f, \"faults\": %ld, \"fault_samples\": %ld, "
           "\"fault_p50_us\": %.3f, \"fault_p99_us\": %.3f}\n",
           sigbus ? "sigbus" : "thread", method, batch, heap_mib, mutators, (t1 - t0) / 1e9, atomic_load(&faults), n,
           p50 / 1e3, p99 / 1e3);
    return 0;
}

/* The per-page timing, in three calls so that a caller times only the loop: perpage_setup maps and
 * fills the from-space and registers the to-space, perpage_loop issues one ioctl (or madvise) per
 * 4 KiB page, perpage_teardown leaves nothing mapped or open.  compaction.py calls the same three
 * through ctypes and times perpage_loop from Python: the c_harness_ratio. */
static int pp_method;                   /* 0 move, 1 copy, 2 dontneed */

int perpage_setup(const char *method, size_t pages) {
#ifdef COMPACTION_LIBRARY
    jmp_buf env;
    if (setjmp(env)) { lib_err = NULL; return -1; }
    lib_err = &env;
#endif
    pp_method = !strcmp(method, "move") ? 0 : !strcmp(method, "copy") ? 1 : 2;
    npages = pages;
    from = map(pages * PAGE);
    to = map(pages * PAGE);
    for (size_t i = 0; i < pages; i++) from[i * PAGE] = (char)i;
    open_uffd(0);
    register_missing(to, pages * PAGE);
#ifdef COMPACTION_LIBRARY
    lib_err = NULL;
#endif
    return 0;
}

int perpage_loop(void) {
    for (size_t i = 0; i < npages; i++) {
        unsigned long d = (unsigned long)to + i * PAGE, s = (unsigned long)from + i * PAGE;
        if (pp_method == 0) {
            struct uffdio_move m = { .dst = d, .src = s, .len = PAGE };
            if (ioctl(uffd, UFFDIO_MOVE, &m)) return -1;
        } else if (pp_method == 1) {
            struct uffdio_copy c = { .dst = d, .src = s, .len = PAGE };
            if (ioctl(uffd, UFFDIO_COPY, &c)) return -1;
        } else if (madvise((void *)s, PAGE, MADV_DONTNEED)) {
            return -1;
        }
    }
    return 0;
}

void perpage_teardown(void) {
    if (uffd >= 0) close(uffd);
    uffd = -1;
    if (from) munmap(from, npages * PAGE);
    if (to) munmap(to, npages * PAGE);
    from = to = NULL;
}

/* for a loop written in Python (python_loop_ratio): the addresses and the descriptor */
unsigned long perpage_from(void) { return (unsigned long)from; }
unsigned long perpage_to(void) { return (unsigned long)to; }
int perpage_uffd(void) { return uffd; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* REPS loops, each with its own set-up and tear-down; prints the median ns per page. */
static int perpage(const char *method, size_t pages, int reps) {
    double ns[64];
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    for (int k = 0; k < reps; k++) {
        perpage_setup(method, pages);
        long t0 = now_ns();
        int r = perpage_loop();
        long t1 = now_ns();
        if (r) die(method);
        perpage_teardown();
        ns[k] = (double)(t1 - t0) / (double)pages;
    }
    qsort(ns, (size_t)reps, sizeof(double), cmp_double);
    printf("{\"mode\": \"perpage\", \"method\": \"%s\", \"pages\": %zu, \"reps\": %d, \"ns_per_page\": %.1f}\n",
           method, pages, reps, ns[reps / 2]);
    return 0;
}

static atomic_int mover_running;
static void *long_move(void *arg) {
    (void)arg;
    struct uffdio_move m = { .dst = (unsigned long)to, .src = (unsigned long)from, .len = npages * PAGE };
    atomic_store(&mover_running, 1);
    if (ioctl(uffd, UFFDIO_MOVE, &m)) die("UFFDIO_MOVE");
    atomic_store(&mover_running, 2);
    return NULL;
}

static int munmap_blocked(size_t heap_mib) {
    npages = heap_mib * 1024 * 1024 / PAGE;
    /* one VMA: the moved range plus 16 spare pages at its end, unmapped one by one meanwhile */
    from = map((npages + 16) * PAGE);
    to = map(npages * PAGE);
    memset(from, 1, (npages + 16) * PAGE);
    open_uffd(0);
    register_missing(to, npages * PAGE);
    pthread_t t;
    long t0 = now_ns();
    pthread_create(&t, NULL, long_move, NULL);
    while (atomic_load(&mover_running) == 0) ;
    long worst = 0, total = 0;
    int calls = 0;
    for (int i = 0; i < 16; i++) {
        struct timespec pause = { 0, i ? 2000000 : 200000 };   /* 0.2 ms in, then 2 ms apart */
        nanosleep(&pause, NULL);
        long a = now_ns();
        if (munmap(from + (npages + 15 - i) * PAGE, PAGE)) die("munmap");
        long w = now_ns() - a;
        worst = w > worst ? w : worst;
        total += w;
        calls++;
        if (atomic_load(&mover_running) == 2) break;
    }
    pthread_join(t, NULL);
    long t1 = now_ns();
    printf("{\"mode\": \"munmap\", \"heap_mib\": %zu, \"move_seconds\": %.6f, \"munmap_calls\": %d, "
           "\"munmap_worst_s\": %.6f, \"munmap_mean_s\": %.6f}\n",
           heap_mib, (t1 - t0) / 1e9, calls, worst / 1e9, total / 1e9 / calls);
    return 0;
}

#ifndef COMPACTION_LIBRARY
int main(int argc, char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);              /* never outlive compaction.py */
    alarm(WATCHDOG_S);                             /* nor a bounded run */
    if ((argc == 6 || argc == 7) && !strcmp(argv[1], "compact"))
        return compact(argv[2], strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0), atoi(argv[5]),
                       argc == 7 && !strcmp(argv[6], "sigbus"));
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "perpage"))
        return perpage(argv[2], strtoul(argv[3], NULL, 0), argc == 5 ? atoi(argv[4]) : 1);
    if (argc == 3 && !strcmp(argv[1], "munmap"))
        return munmap_blocked(strtoul(argv[2], NULL, 0));
    fprintf(stderr, "usage: compaction compact METHOD BATCH HEAP_MIB MUTATORS [thread|sigbus] | perpage METHOD PAGES [REPS] | munmap HEAP_MIB\n");
    return 2;
}
#endif
