/*
 * uffd_move_eagain_retry.c - UFFDIO_MOVE after an internal -EAGAIN retry (Linux 6.18).
 *
 * move_pages() (mm/userfaultfd.c) retries a step that returned -EAGAIN.  In 6.18 the PTE step,
 * move_pages_ptes(), returns the bytes it moved, and move_pages() stores its result in `err`
 * only when it is negative (`if (ret < 0) err = ret; else step_size = ret;`).  So after one
 * -EAGAIN, `err` stays -EAGAIN: the next step that succeeds is not counted and the loop goes
 * round again at the same address without advancing.  Two consequences, both shown here:
 *
 *   count   the pages of that step are moved but not counted: the caller sees a short count
 *           (or EEXIST), and the next call finds its own pages at the destination (EEXIST);
 *   holes   with UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, a hole counts as a successful step that
 *           changes nothing, so once the retry reaches a hole the ioctl spins in the kernel
 *           until a fatal signal (the process shows R, in move_pages()).
 *
 * An -EAGAIN needs a race: a second thread that changes the source while the move runs
 * (MADV_DONTNEED for "holes", MADV_PAGEOUT of 64 KiB folios for "count").
 *
 * Usage:  cc -O2 -Wall -pthread -o uffd_move_eagain_retry uffd_move_eagain_retry.c
 *         ./uffd_move_eagain_retry holes [seconds]     (any page size; about a second)
 *         ./uffd_move_eagain_retry count [seconds]     (needs 64 KiB anonymous mTHP: as root,
 *             echo always > /sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled)
 * Exit status: 1 and "RESULT: REPRODUCED" when the kernel misbehaved, 0 and "RESULT: NOT
 * REPRODUCED" when it did not within the time, 77 and "SKIP:" when it cannot run here.
 *
 * Part of the uffd-move-book (notebooks/04-exclusivity.ipynb, "Large folios").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1ULL << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define EXIT_SKIP 77
#define NPAGES 256			/* 16 folios of 64 KiB */
#define PS 4096UL

static char *src, *dst;
static volatile int stop;
static int race_advice;
/* shared with the parent: how many moves the child has finished (the parent's watchdog) */
static volatile long *progress;

static void *racer(void *arg)
{
	while (!stop)
		madvise(src, NPAGES * PS, race_advice);
	return arg;
}

static int open_uffd(void)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	if (ioctl(fd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Is page i of the destination mapped: present or swapped out (without faulting it in)? */
static int dst_mapped(int pagemap, int i)
{
	uint64_t e = 0;
	if (pread(pagemap, &e, 8, ((uintptr_t)dst / PS + i) * 8) != 8)
		return 0;
	return (e >> 62) & 3;
}

/* "holes": one 64 KiB run of data, then holes; a racer zaps the source. */
static int run_holes(int uffd)
{
	for (long it = 0;; it++) {
		memset(src, 1, 16 * PS);
		struct uffdio_move m = { .dst = (uintptr_t)dst, .src = (uintptr_t)src,
					 .len = 64 * PS, .mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES };
		ioctl(uffd, UFFDIO_MOVE, &m);	/* EAGAIN and partial counts are fine here */
		madvise(dst, 64 * PS, MADV_DONTNEED);
		(*progress)++;
	}
	return 0;
}

/* "count": 256 pages, each its own value; a racer pages the source out. */
static int run_count(int uffd)
{
	int pagemap = open("/proc/self/pagemap", O_RDONLY);
	for (long it = 0;; it++) {
		for (int i = 0; i < NPAGES; i++)
			memset(src + i * PS, i % 250 + 1, PS);
		unsigned long off = 0;
		while (off < NPAGES * PS) {
			struct uffdio_move m = { .dst = (uintptr_t)dst + off,
						 .src = (uintptr_t)src + off,
						 .len = NPAGES * PS - off };
			if (!ioctl(uffd, UFFDIO_MOVE, &m))
				break;
			int err = errno;
			long done = m.move > 0 ? m.move : 0;
			int next = (off + done) / PS;
			/* the kernel says page `next` was not moved: its destination must be empty */
			if ((err == EAGAIN || err == EEXIST) && next < NPAGES && dst_mapped(pagemap, next) &&
			    dst[next * PS] == next % 250 + 1) {
				printf("move of %lu pages from page %lu: %s, %ld pages moved, yet page %d "
				       "already holds the source's data at the destination\n",
				       NPAGES - off / PS, off / PS, err == EAGAIN ? "EAGAIN" : "EEXIST",
				       done / (long)PS, next);
				return 1;
			}
			if (err == EAGAIN) {
				off += done;
				continue;
			}
			if (err == EBUSY) {	/* a large folio in the swap cache: wait for reclaim */
				usleep(1000);
				continue;
			}
			if (err == EEXIST) {	/* not ours (a racing fault?): look no further */
				break;
			}
			printf("unexpected errno %d (%s) at page %lu\n", err, strerror(err), off / PS);
			return 2;
		}
		madvise(dst, NPAGES * PS, MADV_DONTNEED);
		(*progress)++;
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "holes";
	int seconds = argc > 2 ? atoi(argv[2]) : 10;
	if (strcmp(mode, "holes") && strcmp(mode, "count")) {
		fprintf(stderr, "usage: %s holes|count [seconds]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(mode, "count")) {
		char buf[64] = "";
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled", "r");
		if (!f || !fgets(buf, sizeof(buf), f) || !strstr(buf, "[always]")) {
			printf("SKIP: 64 KiB anonymous mTHP is not 'always' here\n");
			return EXIT_SKIP;
		}
		fclose(f);
	}
	progress = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (progress == MAP_FAILED)
		return 2;

	/* the child moves (a userfaultfd works on the mm of the process that opened it) */
	pid_t child = fork();
	if (child == 0) {
		int uffd = open_uffd();
		if (uffd < 0) {
			printf("SKIP: no userfaultfd with UFFD_FEATURE_MOVE here (%s)\n", strerror(errno));
			_exit(EXIT_SKIP);
		}
		/* source and destination with an unmapped gap between them, so they never merge */
		char *area = mmap(NULL, 3 * NPAGES * PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (area == MAP_FAILED)
			_exit(2);
		src = area;
		dst = area + 2 * NPAGES * PS;
		mprotect(src, NPAGES * PS, PROT_READ | PROT_WRITE);
		mprotect(dst, NPAGES * PS, PROT_READ | PROT_WRITE);
		struct uffdio_register reg = { .range = { (uintptr_t)dst, NPAGES * PS },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
			printf("SKIP: UFFDIO_REGISTER: %s\n", strerror(errno));
			_exit(EXIT_SKIP);
		}
		pthread_t t;
		race_advice = strcmp(mode, "holes") ? MADV_PAGEOUT : MADV_DONTNEED;
		pthread_create(&t, NULL, racer, NULL);
		_exit(strcmp(mode, "holes") ? run_count(uffd) : run_holes(uffd));
	}
	/* the watchdog: a move that makes no progress for 2 s is stuck in the kernel */
	long last = -1;
	int still = 0, status = 0;
	for (int tick = 0; tick < seconds * 10; tick++) {
		usleep(100000);
		if (waitpid(child, &status, WNOHANG) == child) {
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
			if (code == EXIT_SKIP)
				return EXIT_SKIP;
			printf("RESULT: %s (%s, after %ld rounds)\n",
			       code == 1 ? "REPRODUCED" : "ERROR", mode, *progress);
			return code == 1 ? 1 : 2;
		}
		still = *progress == last ? still + 1 : 0;
		last = *progress;
		if (still >= 20) {
			kill(child, SIGKILL);
			waitpid(child, &status, 0);
			printf("UFFDIO_MOVE (ALLOW_SRC_HOLES) did not return for 2 s after %ld rounds: "
			       "spinning in the kernel; SIGKILL ended it\n", last);
			printf("RESULT: REPRODUCED (%s)\n", mode);
			return 1;
		}
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	printf("RESULT: NOT REPRODUCED (%s, %ld rounds in %d s)\n", mode, *progress, seconds);
	return 0;
}
