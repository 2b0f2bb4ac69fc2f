/*
 * uffd_move_split_refused.c - where the EBUSY of a move out of a referenced large folio comes from.
 *
 * A UFFDIO_MOVE of one 4 KiB page out of a large folio must split the folio first:
 * move_pages_ptes() (mm/userfaultfd.c) calls split_folio(), which refuses a folio with an extra
 * reference with -EAGAIN.  move_pages() retries a step that returned -EAGAIN and stops at any
 * other error.  Passed on as it is, the -EAGAIN livelocks the ioctl while the reference is held
 * (6.8 to 6.18 as released); a stable fix of 2026 ("userfaultfd: fix UFFDIO_MOVE livelock on
 * large folio with extra references", in 6.12.118) turns it into -EBUSY where the split is called.
 * The number of split attempts one ioctl makes tells which kernel this is: one attempt and EBUSY
 * with the fix; without it, attempt after attempt.  The loop in move_pages() ends only on a fatal
 * signal (fatal_signal_pending()): a SIGALRM with a handler would never interrupt it.  So a
 * watchdog process, forked before anything is mapped, SIGKILLs this one when a move has not
 * returned within 10 s, and prints the RESULT line itself, with the refused splits counted
 * since the stuck move began (machine-wide, like every count here).
 *
 * The kernel counts every refused split of a PMD-size folio twice over: thp_split_page_failed
 * in /proc/vmstat and split_failed in
 * /sys/kernel/mm/transparent_hugepage/hugepages-2048kB/stats/ (both counted at the split
 * function's common exit, which every refusal after its first sanity checks takes).  This program maps one PMD-size THP (MADV_HUGEPAGE; THP must be
 * "madvise" or "always"), takes an ordinary reference on page 7 with vmsplice() into a pipe,
 * and moves page 0 three times, printing the errno, the time and how many refused splits each
 * call added.  It then closes the pipe and moves page 0 once more.  It changes no system setting.
 * The counters are machine-wide: a split refused elsewhere at the same moment adds to them.
 *
 * Usage:  cc -O2 -Wall -o uffd_move_split_refused uffd_move_split_refused.c
 *         ./uffd_move_split_refused
 * Exit status: 0 and "RESULT:" when it ran, 77 and "SKIP:" when it cannot run here.
 *
 * Part of the uffd-move-book (notebooks/04-exclusivity.ipynb, "Large folios").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1ULL << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define SPLIT_FAILED "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/stats/split_failed"

/* A counter: the first number in `path`, or the value after `key` in it; -1 if absent. */
static long counter(const char *path, const char *key)
{
	char line[256];
	long value = -1;
	size_t n = key ? strlen(key) : 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!key) {
			value = atol(line);
			break;
		}
		if (!strncmp(line, key, n) && line[n] == ' ') {
			value = atol(line + n + 1);
			break;
		}
	}
	fclose(f);
	return value;
}

static long refused(void)
{
	long size = counter(SPLIT_FAILED, NULL);

	return size >= 0 ? size : counter("/proc/vmstat", "thp_split_page_failed");
}

static int is_thp(char *addr)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "AnonHugePages:", 14))
			kb = atol(line + 14);
	fclose(f);
	(void)addr;
	return kb >= (long)(HUGE >> 10);
}

/* The watchdog's end of a pipe: one byte per move that returned; EOF when the program is done. */
static int heartbeat = -1;

/*
 * Fork the watchdog (before any memory of interest is mapped, so it shares no page).  It waits
 * for a heartbeat at most 10 s at a time; on a timeout the move is stuck in the kernel, which
 * only a fatal signal ends: it says so and sends SIGKILL.
 */
static int start_watchdog(void)
{
	pid_t parent = getpid(), pid;
	int fds[2];

	if (pipe(fds))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		long start = 0;
		char c;

		close(fds[1]);
		for (;;) {
			if (poll(&pfd, 1, 10000) == 0) {
				/* read before the kill: the loop is still running */
				long attempts = refused() - start;

				kill(parent, SIGKILL);
				printf("RESULT: the move did not return within 10 s, after about %ld refused "
				       "splits (an -EAGAIN retry loop); SIGKILL ended it\n", attempts);
				_exit(1);
			}
			if (read(fds[0], &c, 1) <= 0)
				_exit(0);
			if (c == 'm')
				start = refused();
		}
	}
	close(fds[0]);
	heartbeat = fds[1];
	return 0;
}

/* One UFFDIO_MOVE of page 0: prints the outcome, the time and the refused splits it added. */
static int move_once(int uffd, char *dst, char *src, const char *label)
{
	struct uffdio_move mv = { (uintptr_t)dst, (uintptr_t)src, PAGE, 0, 0 };
	struct timespec t0, t1;
	long before = refused(), after;
	int rc, err;

	if (write(heartbeat, "m", 1) != 1)
		return -EIO;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = ioctl(uffd, UFFDIO_MOVE, &mv);
	err = errno;
	if (write(heartbeat, "r", 1) != 1)
		return -EIO;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	after = refused();
	printf("%-24s %-6s move=%-6lld %7.3f ms, refused splits: +%ld\n", label,
	       rc ? (err == EBUSY ? "EBUSY" : strerror(err)) : "ok", (long long)mv.move,
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, after - before);
	return rc ? -err : 0;
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct iovec iov;
	int pipefd[2], uffd, i, busy = 0;
	char *raw, *src, *dst;

	setvbuf(stdout, NULL, _IONBF, 0);	/* a SIGKILL must not swallow what was printed */
	if (refused() < 0) {
		printf("SKIP: no refused-split counter (no THP statistics here)\n");
		return 77;
	}
	if (start_watchdog()) {
		printf("SKIP: no watchdog process: %s\n", strerror(errno));
		return 77;
	}
	raw = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED || dst == MAP_FAILED) {
		printf("SKIP: mmap: %s\n", strerror(errno));
		return 77;
	}
	src = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	madvise(src, HUGE, MADV_HUGEPAGE);
	memset(src, 0x41, HUGE);
	if (!is_thp(src)) {
		printf("SKIP: no PMD-size THP (transparent_hugepage/enabled is \"never\"?)\n");
		return 77;
	}
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE)) {
		printf("SKIP: no userfaultfd with UFFD_FEATURE_MOVE here\n");
		return 77;
	}
	reg.range.start = (uintptr_t)dst;
	reg.range.len = PAGE;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		printf("SKIP: UFFDIO_REGISTER: %s\n", strerror(errno));
		return 77;
	}
	if (pipe(pipefd)) {
		printf("SKIP: pipe: %s\n", strerror(errno));
		return 77;
	}
	iov.iov_base = src + 7 * PAGE;
	iov.iov_len = PAGE;
	if (vmsplice(pipefd[1], &iov, 1, 0) != (ssize_t)PAGE) {
		printf("SKIP: vmsplice: %s\n", strerror(errno));
		return 77;
	}
	for (i = 1; i <= 3; i++) {
		char label[32];

		snprintf(label, sizeof(label), "page 7 in a pipe, try %d:", i);
		busy += move_once(uffd, dst, src, label) == -EBUSY;
	}
	close(pipefd[0]);
	close(pipefd[1]);
	move_once(uffd, dst, src, "pipe closed:");
	printf("RESULT: %d of 3 moves EBUSY with the reference held\n", busy);
	close(heartbeat);		/* EOF: the watchdog exits */
	return 0;
}
