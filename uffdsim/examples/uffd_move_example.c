/*
 * uffd_move_example.c - move anonymous pages into a userfaultfd-registered range with
 * UFFDIO_MOVE (Linux 6.8+), the way a careful caller has to:
 *
 *   - open a userfaultfd, do the UFFDIO_API handshake asking for UFFD_FEATURE_MOVE,
 *   - register the destination in MISSING mode (the source needs no registration),
 *   - move the whole range with a retry loop that handles
 *       partial progress  (-1/EAGAIN with a positive .move: continue after the moved part),
 *       EAGAIN, nothing moved (a non-cooperative event is pending: the call keeps failing
 *                          until the event is read and the thread that raised it has resumed,
 *                          so read the userfaultfd's messages, then retry, bounded),
 *       EBUSY             (the first page is pinned or not exclusive, e.g. COW-shared with a
 *                          forked child or merged by KSM, or it belongs to a huge page that
 *                          must be split while another page of it is referenced elsewhere,
 *                          e.g. by a pipe after vmsplice(), on kernels with the 2026 stable
 *                          fix for that case (without it, 6.8 and later retry inside the call
 *                          while the reference is held: chapter 4); the errno does not say which.  Only
 *                          the caller knows its pins: a page it pinned (io_uring fixed buffer,
 *                          RDMA, vfio) must not be copied and zapped, because the device keeps
 *                          the old frame.  This program pins nothing, so it falls back to
 *                          UFFDIO_COPY of that page and MADV_DONTNEED of the source page),
 *       ENOENT            (the first source page is a hole: give the destination the zero page
 *                          with UFFDIO_ZEROPAGE, so a reader there does not fault forever),
 *       EEXIST            (the destination page is already there: someone resolved it; skip it),
 *       any other errno   (EINVAL, EFAULT, ENOMEM, ...: why a move fails may change between
 *                          kernels, so never abort on it: ask again for the first page alone, and
 *                          if that fails too, fall back to UFFDIO_COPY + MADV_DONTNEED like EBUSY;
 *                          the summary names every page that fell back and the errno why),
 *   - check that the destination holds the data, that the source is empty, and (where
 *     /proc/self/pagemap shows frame numbers, i.e. as root) that moved pages kept their frame.
 *
 * The source range has 8 pages: data in 0, 1, 3, 4, 6; holes at 2 and 7; page 5 is written
 * before fork() and stays COW-shared with a child that waits on a pipe, so it is EBUSY.
 *
 * Build and run:  cc -O2 -Wall -pthread -o uffd_move_example uffd_move_example.c && ./uffd_move_example
 * With --pending-event, the program also asks for UFFD_FEATURE_EVENT_REMOVE and a second thread
 * discards a registered page with MADV_DONTNEED before the move: that thread waits until the
 * REMOVE event is read, and until then UFFDIO_MOVE fails with EAGAIN and moves nothing.  The
 * loop reads the event and retries.  The discarded page is a spare one just past the
 * destination range: the kernel sends the REMOVE event before it zaps, so a page the loop
 * filled right after reading the event could still be zapped by it (a real monitor would
 * get a fault there later and fill it again; this program's data check would fail).
 * With --readonly-page, source page 6 is made read-only first, which makes it a mapping of its
 * own: a move across it fails with EINVAL (the range leaves its mapping), and so does a move of
 * that page alone (protections unlike the destination's; Linux 6.8-6.18), an errno the loop has
 * no case for.
 * Exit status: 0 success ("RESULT: SUCCESS"), 1 failure, 77 skipped (no usable userfaultfd or
 * no UFFDIO_MOVE on this kernel; the reason is printed on a "SKIP:" line).
 *
 * Part of the uffd-move-book (notebooks/07-documentation.ipynb).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* uapi headers older than Linux 6.8 lack UFFDIO_MOVE: define the parts used here. */
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
	__s64 move;	/* output: bytes moved, or a negated errno */
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define EXIT_SKIP 77
#define NPAGES 8
#define SHARED_PAGE 5			/* COW-shared with the child: EBUSY */
#define READONLY_PAGE 6			/* with --readonly-page: not writable, MOVE says EINVAL */
#define MAX_EVENT_RETRIES 1000		/* bound on EAGAIN retries that moved nothing */

static long page_size;

/* Expected fill byte of source page i; 0 for the holes. */
static int expected_byte(int i)
{
	return (i == 2 || i == 7) ? 0 : 'A' + i;
}

/* The errno's name, for the log (strerrorname_np() needs glibc 2.32). */
static const char *errname(int err)
{
	switch (err) {
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case EFAULT: return "EFAULT";
	case ENOMEM: return "ENOMEM";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	default: return "errno";
	}
}

struct stats {
	int calls;		/* UFFDIO_MOVE calls */
	int partial;		/* ... that moved some but not all of what was asked */
	int moved;		/* pages moved (zero copy) */
	int copied;		/* pages copied after EBUSY */
	int holes;		/* holes answered with UFFDIO_ZEROPAGE */
	int retries;		/* EAGAIN with nothing moved */
	int events;		/* userfaultfd messages read before such a retry */
	int skipped;		/* EEXIST: dst page already there */
	int fell_back[NPAGES];	/* per page: the errno after which it was copied (0: not copied) */
	int moved_page[NPAGES];	/* which pages arrived by a move */
};

/* A userfaultfd: the syscall (user-mode faults only: allowed for every user), then the
 * syscall without that flag (kernels before 5.11), then /dev/userfaultfd (Linux 6.1+). */
static int open_userfaultfd(char *why, size_t n)
{
	int fd = -1, err1 = ENOSYS, err2 = ENOENT;
#ifdef SYS_userfaultfd
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)
		fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	err1 = errno;
#endif
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		err2 = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	} else {
		err2 = errno;
	}
	snprintf(why, n, "userfaultfd(2): %s; /dev/userfaultfd: %s", strerror(err1), strerror(err2));
	return -1;
}

/* The frame number of the page at addr from /proc/self/pagemap: 0 when the page is not
 * present or the kernel hides frame numbers (no CAP_SYS_ADMIN), -1 when pagemap is unreadable.
 * Bit 63 = present, bit 62 = swapped, bits 0-54 = frame number. */
static long long pagemap_entry(const void *addr, uint64_t *raw)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e;

	if (fd < 0)
		return -1;
	off_t off = (off_t)((uintptr_t)addr / (uintptr_t)page_size) * (off_t)sizeof(e);
	ssize_t got = pread(fd, &e, sizeof(e), off);
	close(fd);
	if (got != (ssize_t)sizeof(e))
		return -1;
	if (raw)
		*raw = e;
	return (e >> 63) & 1 ? (long long)(e & ((1ULL << 55) - 1)) : 0;
}

/* The caller's own record of the source pages it pinned for a device (io_uring fixed buffers,
 * RDMA memory regions, vfio DMA maps).  The kernel's EBUSY is the same for a pinned page and a
 * shared one; copying a pinned page would leave the device writing into a frame nobody maps.
 * This program registers no buffer anywhere, so nothing is pinned. */
static int pinned_by_us(const char *addr)
{
	(void)addr;
	return 0;
}

/* EAGAIN with nothing moved: a non-cooperative event (fork, remove, unmap, remap) is pending,
 * and every fill ioctl, UFFDIO_MOVE included, fails until it has been read and the thread that
 * raised it has resumed.  Read every queued message (the descriptor is non-blocking).  A real
 * monitor hands page-fault messages to its fault handler and updates its view of the address
 * space for the others; this program (which asks for REMOVE events only with --pending-event)
 * only counts them.  Returns the number read, -1 on error. */
static int read_events(int uffd)
{
	struct uffd_msg msg;
	int n = 0;

	for (;;) {
		ssize_t got = read(uffd, &msg, sizeof(msg));
		if (got == (ssize_t)sizeof(msg)) {
			n++;
			continue;
		}
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return n;		/* the queue is empty */
		perror("read(userfaultfd)");
		return -1;
	}
}

/* The EBUSY fallback for one page: copy its bytes into dst, then empty the source page.
 * Only safe when nobody writes the source page meanwhile: a store that lands between the
 * copy and the MADV_DONTNEED is lost (chapter 3 of the book counts such interleavings).
 * The alternative that keeps concurrent stores, on Linux 6.18 and only for a shared or
 * merged page (never a pinned one): take a write fault on the source page without storing
 * anything, with madvise(MADV_POPULATE_WRITE) (Linux 5.14+), which gives the process an
 * exclusive page again, and retry the move.  A store of your own is no substitute: a plain
 * store can overwrite another thread's, and a compiler may turn an atomic add of zero into
 * a load, which takes no write fault. */
static int copy_instead(int uffd, char *dst, char *src)
{
	struct uffdio_copy cp = {
		.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = (__u64)page_size, .mode = 0,
	};

	if (ioctl(uffd, UFFDIO_COPY, &cp) != 0) {
		fprintf(stderr, "UFFDIO_COPY: %s (copy = %lld)\n", strerror(errno), (long long)cp.copy);
		return -1;
	}
	if (madvise(src, (size_t)page_size, MADV_DONTNEED) != 0) {
		perror("madvise(MADV_DONTNEED)");
		return -1;
	}
	return 0;
}

/* The hole case: nothing to move; map the zero page so that readers of dst see zeros. */
static int zero_instead(int uffd, char *dst)
{
	struct uffdio_zeropage zp = {
		.range = { .start = (uintptr_t)dst, .len = (__u64)page_size }, .mode = 0,
	};

	if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) != 0) {
		fprintf(stderr, "UFFDIO_ZEROPAGE: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* Move [src, src + len) to [dst, dst + len). Returns 0 when every page of dst is filled. */
static int move_range(int uffd, char *dst, char *src, size_t len, struct stats *st)
{
	size_t done = 0, narrow_at = (size_t)-1;
	int again = 0;

	while (done < len) {
		struct uffdio_move mv = {
			.dst = (uintptr_t)(dst + done),
			.src = (uintptr_t)(src + done),
			.len = done == narrow_at ? (__u64)page_size : len - done,
			.mode = 0,	/* wake threads waiting on dst; holes are errors (ENOENT) */
			.move = 0,
		};
		size_t first = done / (size_t)page_size;
		int last = done == narrow_at ? (int)first : NPAGES - 1;
		int rc = ioctl(uffd, UFFDIO_MOVE, &mv);
		int err = errno;

		st->calls++;
		if (rc == 0 || mv.move > 0) {
			/* rc == 0: all of it; otherwise errno is EAGAIN and .move says how far it got */
			size_t n = (size_t)mv.move / (size_t)page_size;

			for (size_t i = 0; i < n; i++)
				st->moved_page[first + i] = 1;
			st->moved += (int)n;
			done += (size_t)mv.move;
			again = 0;
			if (rc == 0) {
				printf("  move pages %zu..%d: ok, move = %lld\n", first, last,
				       (long long)mv.move);
			} else {
				st->partial++;
				printf("  move pages %zu..%d: %s, move = %lld (partial: continue at page %zu)\n",
				       first, last, errname(err),
				       (long long)mv.move, done / (size_t)page_size);
			}
			continue;
		}
		/* Nothing moved. Errors found after argument validation are also in .move as -errno;
		 * argument errors (EINVAL for alignment, length, mode) leave .move untouched. */
		printf("  move pages %zu..%d: %s, move = %lld", first, last,
		       errname(err), (long long)mv.move);
		switch (err) {
		case EAGAIN: {
			/* A fork/remove/unmap/remap event is pending (move = -EAGAIN; unwritten before
			 * Linux 6.15 and its stable backports): the call fails until the event is read,
			 * so read it, update the view of the address space, then retry. */
			int n = read_events(uffd);

			if (n < 0 || ++again > MAX_EVENT_RETRIES) {
				printf(" -> giving up\n");
				return -1;
			}
			st->retries++;
			st->events += n;
			printf(" -> read %d event(s), retry\n", n);
			if (n == 0) {
				/* Nothing left to read: the thread whose change raised the event lowers
				 * mmap_changing itself once it runs again after its event was read
				 * (userfaultfd_event_wait_completion()); give it a moment. */
				struct timespec pause = { 0, 1000000 };

				nanosleep(&pause, NULL);
			}
			continue;
		}
		case EBUSY:
			if (pinned_by_us(src + done)) {
				printf(" -> page %zu is pinned by us: not copied, giving up\n", first);
				return -1;
			}
			printf(" -> page %zu is shared or merged (we pin nothing): "
			       "UFFDIO_COPY + MADV_DONTNEED\n", first);
			if (copy_instead(uffd, dst + done, src + done))
				return -1;
			st->copied++;
			st->fell_back[first] = EBUSY;
			break;
		case ENOENT:
			/* Here both VMAs exist, so ENOENT means a hole in the source (it would also be
			 * the answer for an unmapped src or dst address). */
			printf(" -> page %zu is a hole: UFFDIO_ZEROPAGE\n", first);
			if (zero_instead(uffd, dst + done))
				return -1;
			st->holes++;
			break;
		case EEXIST:
			/* dst already populated: a concurrent resolver got there first (UFFDIO_MOVE
			 * woke nobody for it: wake the range if threads may wait there).  The source
			 * page was not moved and still holds its data: discard it too if that data
			 * is no longer wanted, or it stays allocated. */
			printf(" -> page %zu is already there: skip it\n", first);
			st->skipped++;
			break;
		default:
			/* EINVAL (unregistered dst, non-anonymous, mismatched or read-only VMAs, a range
			 * crossing a VMA), EFAULT (a guard/poison/uffd-wp marker in the source), ENOMEM,
			 * ESRCH, or something a later kernel adds. The error may concern the range, not
			 * the first page: ask for that page alone first. If it fails too, copy it. */
			if (mv.len > (__u64)page_size) {
				narrow_at = done;
				printf(" -> ask again for page %zu alone\n", first);
				continue;
			}
			if (pinned_by_us(src + done)) {
				printf(" -> page %zu is pinned by us: not copied, giving up\n", first);
				return -1;
			}
			printf(" -> page %zu: UFFDIO_COPY + MADV_DONTNEED instead\n", first);
			if (copy_instead(uffd, dst + done, src + done))
				return -1;	/* the fallback failed as well: give up, say so */
			st->copied++;
			st->fell_back[first] = err;
			break;
		}
		done += (size_t)page_size;
		again = 0;
	}
	return 0;
}

/* --pending-event: a thread discards the spare registered page past the destination range;
 * with UFFD_FEATURE_EVENT_REMOVE the kernel queues a REMOVE event and the thread sleeps until
 * the monitor has read it, then zaps the page. */
static void *discard_page(void *addr)
{
	if (madvise(addr, (size_t)page_size, MADV_DONTNEED) != 0)
		perror("madvise(MADV_DONTNEED) in the discarding thread");
	return NULL;
}

int main(int argc, char **argv)
{
	char why[256];
	int readonly_page = argc > 1 && strcmp(argv[1], "--readonly-page") == 0;
	int pending_event = argc > 1 && strcmp(argv[1], "--pending-event") == 0;
	pthread_t discarder;
	int uffd, pipefd[2], failures = 0;
	struct stats st = { 0 };
	uint64_t frame_before[NPAGES] = { 0 };

	alarm(20);	/* never hang: SIGALRM terminates the program if anything blocks */
	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)NPAGES * (size_t)page_size;

	uffd = open_userfaultfd(why, sizeof(why));
	if (uffd < 0) {
		printf("SKIP: no userfaultfd: %s\n", why);
		return EXIT_SKIP;
	}
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MOVE | (pending_event ? UFFD_FEATURE_EVENT_REMOVE : 0),
	};
	if (ioctl(uffd, UFFDIO_API, &api) != 0) {
		/* kernels before 6.8 refuse the unknown feature bit with EINVAL */
		printf("SKIP: UFFDIO_API with UFFD_FEATURE_MOVE: %s (Linux < 6.8?)\n", strerror(errno));
		return EXIT_SKIP;
	}
	if (!(api.features & UFFD_FEATURE_MOVE)) {
		printf("SKIP: the kernel does not offer UFFD_FEATURE_MOVE\n");
		return EXIT_SKIP;
	}

	char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* dst has one spare page past the range, registered too: --pending-event discards it */
	size_t dst_len = len + (size_t)page_size;
	char *dst = mmap(NULL, dst_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED) {
		perror("mmap");
		return 1;
	}

	/* Page 5 is written before fork(): parent and child then share it copy-on-write, and
	 * the parent's page is no longer exclusive to it (EBUSY for UFFDIO_MOVE). */
	memset(src + SHARED_PAGE * page_size, expected_byte(SHARED_PAGE), (size_t)page_size);
	if (pipe(pipefd) != 0) {
		perror("pipe");
		return 1;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	if (child == 0) {		/* keep the shared page alive until the parent is done */
		char c;
		close(pipefd[1]);
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(pipefd[0]);
	/* Pages written after fork() are new pages of the parent alone: exclusive, movable. */
	for (int i = 0; i < NPAGES; i++)
		if (i != SHARED_PAGE && expected_byte(i))
			memset(src + (size_t)i * (size_t)page_size, expected_byte(i), (size_t)page_size);
	for (int i = 0; i < NPAGES; i++) {
		long long f = pagemap_entry(src + (size_t)i * (size_t)page_size, NULL);
		frame_before[i] = f > 0 ? (uint64_t)f : 0;
	}

	if (readonly_page && mprotect(src + (size_t)READONLY_PAGE * (size_t)page_size,
				      (size_t)page_size, PROT_READ) != 0) {
		perror("mprotect");
		return 1;
	}

	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)dst, .len = dst_len }, .mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
		perror("UFFDIO_REGISTER");
		return 1;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_MOVE))) {
		printf("SKIP: UFFDIO_MOVE is not offered for this range\n");
		return EXIT_SKIP;
	}

	if (pending_event) {
		struct pollfd pfd = { .fd = uffd, .events = POLLIN };

		if (pthread_create(&discarder, NULL, discard_page, dst + len) != 0) {
			printf("pthread_create failed\n");
			return 1;
		}
		if (poll(&pfd, 1, 5000) != 1) {	/* wait until the REMOVE event is queued */
			printf("no REMOVE event arrived\n");
			return 1;
		}
	}
	printf("uffd_move_example: moving %d pages (holes at 2 and 7, page %d shared with a child)\n",
	       NPAGES, SHARED_PAGE);
	int rc = move_range(uffd, dst, src, len, &st);
	if (pending_event)
		pthread_join(discarder, NULL);	/* it returns once its event was read */

	/* Unregister before reading dst: a page we failed to fill then reads as zeros instead
	 * of blocking this thread on a userfault nobody would resolve. */
	struct uffdio_range range = { .start = (uintptr_t)dst, .len = dst_len };
	if (ioctl(uffd, UFFDIO_UNREGISTER, &range) != 0)
		perror("UFFDIO_UNREGISTER");

	close(pipefd[1]);		/* the child exits */
	waitpid(child, NULL, 0);

	if (rc != 0) {
		printf("the move loop failed\n");
		failures++;
	}
	/* 1. The data arrived. */
	int bad_data = 0;
	for (int i = 0; i < NPAGES; i++)
		for (long b = 0; b < page_size; b++)
			if ((unsigned char)dst[(size_t)i * (size_t)page_size + (size_t)b] !=
			    expected_byte(i)) {
				printf("dst page %d byte %ld: expected %#x, found %#x\n", i, b,
				       expected_byte(i),
				       (unsigned char)dst[(size_t)i * (size_t)page_size + (size_t)b]);
				bad_data++;
				break;
			}
	failures += bad_data;
	/* 2. The source is empty (not present, not swapped), as after a real move. */
	int left = 0, pagemap_ok = 1;
	for (int i = 0; i < NPAGES; i++) {
		uint64_t raw = 0;
		if (pagemap_entry(src + (size_t)i * (size_t)page_size, &raw) < 0) {
			pagemap_ok = 0;
			break;
		}
		if ((raw >> 63) & 1 || (raw >> 62) & 1) {
			printf("src page %d is still mapped\n", i);
			left++;
		}
	}
	failures += left;
	/* 3. Zero copy: a moved page is the same frame at dst (only visible with frame numbers). */
	int same = 0, known = 0, copied_same = 0;
	for (int i = 0; i < NPAGES; i++) {
		long long f = pagemap_entry(dst + (size_t)i * (size_t)page_size, NULL);
		if (!frame_before[i] || f <= 0)
			continue;
		known++;
		if (st.moved_page[i] && (uint64_t)f == frame_before[i])
			same++;
		if (!st.moved_page[i] && (uint64_t)f == frame_before[i])
			copied_same++;
	}

	printf("calls: %d UFFDIO_MOVE (%d partial, %d EAGAIN retries after reading %d event(s)); "
	       "pages: %d moved, %d copied after a failed move, %d holes zero-filled, "
	       "%d already there\n", st.calls, st.partial, st.retries, st.events, st.moved,
	       st.copied, st.holes, st.skipped);
	printf("fell back to UFFDIO_COPY + MADV_DONTNEED:");
	for (int i = 0; i < NPAGES; i++)
		if (st.fell_back[i])
			printf(" page %d (%s)", i, errname(st.fell_back[i]));
	printf("%s\n", st.copied ? "" : " none");
	printf("data check: %s\n", bad_data ? "FAILED" : "dst holds the source data, holes read as zeros");
	printf("source check: %s\n", !pagemap_ok ? "skipped (/proc/self/pagemap unreadable)" :
	       left ? "FAILED" : "every source page is empty");
	if (known) {
		printf("frames: %d of %d moved pages kept their frame; the copied page %s\n", same,
		       st.moved, copied_same ? "kept its frame (unexpected)" : "got a new frame");
		if (same != st.moved || copied_same)
			failures++;
	} else {
		printf("frames: not visible here (pagemap hides frame numbers without CAP_SYS_ADMIN)\n");
	}
	printf("RESULT: %s\n", failures ? "FAILURE" : "SUCCESS");
	return failures ? 1 : 0;
}
