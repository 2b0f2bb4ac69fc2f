/* compaction.c: a heap-compaction emulation on the running kernel, for benchmarks/compaction.py.
 *
 * A compacting thread moves every page of a from-space into a MISSING-registered to-space, in
 * batches (1 page, 16 pages = 64 KiB, 512 pages = 2 MiB), with UFFDIO_MOVE or with UFFDIO_COPY
 * followed by MADV_DONTNEED of the source batch.  Meanwhile M mutator threads (0 or more) pick
 * pages at random (a fixed seed per thread) and read and write them at their to-space address;
 * a to-space page the compactor has not reached yet faults, and a fault-handling thread resolves
 * the fault the same way the compactor would (MOVE, or COPY + DONTNEED of that one page), then
 * wakes the mutator.  The compactor skips a page that is already there (EEXIST) or gone from the
 * from-space (ENOENT).  Prints one JSON object per run.
 *
 *   compaction compact  METHOD BATCH_PAGES HEAP_MIB MUTATORS
 *   compaction perpage  METHOD PAGES          (METHOD: move, copy, dontneed; ns per page)
 *   compaction munmap   HEAP_MIB               (worst munmap wait during one MOVE of HEAP_MIB)
 *
 * Built by benchmarks/compaction.py with `cc -O2 -pthread`; Linux 6.8+ (UFFD_FEATURE_MOVE).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
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
static long max_lat;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void die(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

static void *map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    madvise(p, bytes, MADV_NOHUGEPAGE);        /* small pages: what the batches are made of */
    return p;
}

static void open_uffd(void) {
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
    if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
}

static void register_missing(void *at, size_t bytes) {
    struct uffdio_register r = { .range = { (unsigned long)at, bytes }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &r)) die("UFFDIO_REGISTER");
}

/* Moves or copies pages [first, first + n); returns 0, or the errno of a page that was skipped. */
static int transfer(size_t first, size_t n, int wake) {
    unsigned long d = (unsigned long)to + first * PAGE, s = (unsigned long)from + first * PAGE;
    if (method_move) {
        struct uffdio_move m = { .dst = d, .src = s, .len = n * PAGE,
                                 .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE };
        if (ioctl(uffd, UFFDIO_MOVE, &m) == 0) return 0;
        if (errno == EEXIST || errno == ENOENT || errno == EAGAIN) {
            /* part of the batch is there already: the rest one page at a time */
            long moved = m.move > 0 ? m.move / (long)PAGE : 0;
            for (size_t i = (size_t)moved; i < n; i++) {
                struct uffdio_move one = { .dst = d + i * PAGE, .src = s + i * PAGE, .len = PAGE,
                                           .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE };
                ioctl(uffd, UFFDIO_MOVE, &one);
            }
            return 0;
        }
        die("UFFDIO_MOVE");
    }
    struct uffdio_copy c = { .dst = d, .src = s, .len = n * PAGE, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
    if (ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST && errno != EAGAIN) die("UFFDIO_COPY");
    if (c.copy >= 0 && (size_t)c.copy < n * PAGE) {          /* stopped at a page that is there */
        for (size_t i = (size_t)c.copy / PAGE; i < n; i++) {
            struct uffdio_copy one = { .dst = d + i * PAGE, .src = s + i * PAGE, .len = PAGE,
                                       .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
            ioctl(uffd, UFFDIO_COPY, &one);
        }
    }
    if (madvise((void *)s, n * PAGE, MADV_DONTNEED)) die("madvise");
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
        transfer(page, 1, 1);
        /* the compactor may have filled it meanwhile: wake whoever waits on it anyway */
        struct uffdio_range r = { (unsigned long)to + page * PAGE, PAGE };
        ioctl(uffd, UFFDIO_WAKE, &r);
    }
    return NULL;
}

static atomic_long progress;            /* pages the compactor has finished (published) */

static void *mutator(void *arg) {
    unsigned int seed = (unsigned int)(uintptr_t)arg * 2654435761u + 1;
    while (!atomic_load(&stop_mutators)) {
        size_t page = (size_t)rand_r(&seed) % npages;
        volatile char *p = to + page * PAGE + (seed % PAGE);
        int maybe_fault = (long)page >= atomic_load(&progress);
        long t0 = maybe_fault ? now_ns() : 0;
        char v = *p;                              /* read, then write the object */
        *p = (char)(v + 1);
        if (maybe_fault) {
            long n = atomic_fetch_add(&nlat, 1);
            if (n < 1000000) lat_ns[n] = now_ns() - t0;
        }
    }
    return NULL;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int compact(const char *method, size_t batch, size_t heap_mib, int mutators) {
    method_move = strcmp(method, "move") == 0;
    npages = heap_mib * 1024 * 1024 / PAGE;
    from = map(npages * PAGE);
    to = map(npages * PAGE);
    for (size_t i = 0; i < npages; i++) from[i * PAGE] = (char)i;   /* the live heap */
    open_uffd();
    register_missing(to, npages * PAGE);
    lat_ns = calloc(1000000, sizeof(long));
    pthread_t h, m[64];
    if (mutators > 64) mutators = 64;
    pthread_create(&h, NULL, handler, NULL);
    for (int i = 0; i < mutators; i++) pthread_create(&m[i], NULL, mutator, (void *)(uintptr_t)(i + 1));
    long t0 = now_ns();
    for (size_t first = 0; first < npages; first += batch) {
        size_t n = first + batch > npages ? npages - first : batch;
        transfer(first, n, 1);
        atomic_store(&progress, (long)(first + n));
    }
    long t1 = now_ns();
    /* mutators first: one may wait in a fault that only the handler resolves */
    atomic_store(&stop_mutators, 1);
    for (int i = 0; i < mutators; i++) pthread_join(m[i], NULL);
    atomic_store(&done, 1);
    pthread_join(h, NULL);
    long n = atomic_load(&nlat) < 1000000 ? atomic_load(&nlat) : 1000000;
    qsort(lat_ns, (size_t)n, sizeof(long), cmp_long);
    long p50 = n ? lat_ns[n / 2] : 0, p99 = n ? lat_ns[(n * 99) / 100] : 0;
    (void)max_lat;
    printf("{\"mode\": \"compact\", \"method\": \"%s\", \"batch_pages\": %zu, \"heap_mib\": %zu, "
           "\"mutators\": %d, \"seconds\": %.6f, \"faults\": %ld, \"accesses_ahead\": %ld, "
           "\"fault_p50_us\": %.3f, \"fault_p99_us\": %.3f}\n",
           method, batch, heap_mib, mutators, (t1 - t0) / 1e9, atomic_load(&faults), n,
           p50 / 1e3, p99 / 1e3);
    return 0;
}

/* ns per page of one ioctl (or madvise) per 4 KiB page; also called through ctypes by compaction.py,
 * which times the same call from Python (the c_harness_ratio).  Leaves nothing mapped or open. */
double perpage_ns(const char *method, size_t pages) {
    npages = pages;
    from = map(pages * PAGE);
    to = map(pages * PAGE);
    for (size_t i = 0; i < pages; i++) from[i * PAGE] = (char)i;
    open_uffd();
    register_missing(to, pages * PAGE);
    long t0 = now_ns();
    for (size_t i = 0; i < pages; i++) {
        unsigned long d = (unsigned long)to + i * PAGE, s = (unsigned long)from + i * PAGE;
        if (!strcmp(method, "move")) {
            struct uffdio_move m = { .dst = d, .src = s, .len = PAGE };
            if (ioctl(uffd, UFFDIO_MOVE, &m)) die("UFFDIO_MOVE");
        } else if (!strcmp(method, "copy")) {
            struct uffdio_copy c = { .dst = d, .src = s, .len = PAGE };
            if (ioctl(uffd, UFFDIO_COPY, &c)) die("UFFDIO_COPY");
        } else if (madvise((void *)s, PAGE, MADV_DONTNEED)) {
            die("madvise");
        }
    }
    long t1 = now_ns();
    close(uffd);
    munmap(from, pages * PAGE);
    munmap(to, pages * PAGE);
    return (double)(t1 - t0) / (double)pages;
}

static int perpage(const char *method, size_t pages) {
    double ns = perpage_ns(method, pages);
    printf("{\"mode\": \"perpage\", \"method\": \"%s\", \"pages\": %zu, \"ns_per_page\": %.1f}\n",
           method, pages, ns);
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
    open_uffd();
    register_missing(to, npages * PAGE);
    pthread_t t;
    long t0 = now_ns();
    pthread_create(&t, NULL, long_move, NULL);
    while (atomic_load(&mover_running) == 0) ;
    long worst = 0, total = 0;
    int calls = 0;
    for (int i = 0; i < 16; i++) {
        struct timespec pause = { 0, 2000000 };          /* 2 ms apart */
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
    if (argc == 6 && !strcmp(argv[1], "compact"))
        return compact(argv[2], strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0), atoi(argv[5]));
    if (argc == 4 && !strcmp(argv[1], "perpage"))
        return perpage(argv[2], strtoul(argv[3], NULL, 0));
    if (argc == 3 && !strcmp(argv[1], "munmap"))
        return munmap_blocked(strtoul(argv[2], NULL, 0));
    fprintf(stderr, "usage: compaction compact METHOD BATCH HEAP_MIB MUTATORS | perpage METHOD PAGES | munmap HEAP_MIB\n");
    return 2;
}
#endif
