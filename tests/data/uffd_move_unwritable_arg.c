/* UFFDIO_MOVE with an argument struct that can be read but not written (mprotect PROT_READ).
 * userfaultfd_move() writes .move with put_user() after move_pages() (and before it, when an
 * event is pending); when that write fails the call returns EFAULT, whatever move_pages() did.
 * Prints one line per case: the errno, whether .move kept its sentinel, and whether the source
 * page is still mapped (from /proc/self/pagemap).  Exit 77: skip. */
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
/* UFFDIO_MOVE for uapi headers older than 6.8: the test passes -include uffdio_move_compat.h */
#define SENTINEL 12345

static long ps;

static const char *errname(int e)
{
	switch (e) {
	case EFAULT: return "EFAULT";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case EAGAIN: return "EAGAIN";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	default: return "other";
	}
}

static char *page(void)
{
	char *p = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static int uffd(unsigned long long features)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE | features };

	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) != 0) {
		printf("SKIP: no userfaultfd with UFFD_FEATURE_MOVE (%s)\n", strerror(errno));
		exit(77);
	}
	return fd;
}

static void reg(int fd, char *at)
{
	struct uffdio_register r = { .range = { (uintptr_t)at, (__u64)ps },
				     .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(fd, UFFDIO_REGISTER, &r) != 0) {
		perror("UFFDIO_REGISTER");
		exit(1);
	}
}

static int mapped(char *at)
{
	uint64_t e = 0;
	int pm = open("/proc/self/pagemap", O_RDONLY);

	if (pm < 0 || pread(pm, &e, sizeof(e), (off_t)((uintptr_t)at / (uintptr_t)ps * 8)) != sizeof(e)) {
		perror("pagemap");
		exit(1);
	}
	close(pm);
	return (int)(e >> 63);
}

/* One UFFDIO_MOVE of one page through a read-only argument struct; prints the outcome. */
static void move_ro(const char *what, int fd, char *d, char *s)
{
	struct uffdio_move *m = (struct uffdio_move *)page();
	int rc, err;

	*m = (struct uffdio_move){ .dst = (uintptr_t)d, .src = (uintptr_t)s, .len = (__u64)ps,
				   .mode = 0, .move = SENTINEL };
	mprotect(m, (size_t)ps, PROT_READ);
	rc = ioctl(fd, UFFDIO_MOVE, m);
	err = errno;
	printf("%s: %s, move %s, src %s\n", what, rc == 0 ? "ok" : errname(err),
	       m->move == SENTINEL ? "unwritten" : "written", mapped(s) ? "mapped" : "empty");
	munmap(m, (size_t)ps);
}

static void *discard(void *at)
{
	madvise(at, (size_t)ps, MADV_DONTNEED);	/* waits until the REMOVE event is read */
	return NULL;
}

int main(void)
{
	ps = sysconf(_SC_PAGESIZE);
	{	/* an exclusive page: it moves, then .move cannot be written */
		char *s = page(), *d = page();
		int fd = uffd(0);

		memset(s, 0x41, (size_t)ps);
		reg(fd, d);
		move_ro("exclusive", fd, d, s);
	}
	{	/* a page COW-shared with a live child: EBUSY inside, EFAULT outside */
		char *s = page(), *d = page();
		int fd = uffd(0), ready[2];
		pid_t child;
		char c;

		memset(s, 0x41, (size_t)ps);
		reg(fd, d);
		if (pipe(ready) != 0)
			return 1;
		child = fork();
		if (child == 0) {
			close(ready[1]);
			if (read(ready[0], &c, 1) < 0)
				_exit(1);
			_exit(0);
		}
		move_ro("shared", fd, d, s);
		close(ready[1]);
		waitpid(child, NULL, 0);
	}
	{	/* dst not registered: EINVAL from validate_move_areas() becomes EFAULT */
		char *s = page(), *d = page();
		int fd = uffd(0);

		memset(s, 0x41, (size_t)ps);
		move_ro("unregistered dst", fd, d, s);
	}
	{	/* an argument error (dst not page-aligned): .move is never written, EINVAL stays */
		char *s = page(), *d = page();
		int fd = uffd(0);

		memset(s, 0x41, (size_t)ps);
		reg(fd, d);
		move_ro("unaligned dst", fd, d + 1, s);
	}
	{	/* a pending REMOVE event: -EAGAIN cannot be written, EFAULT */
		char *s = page(), *d = page(), *d2 = page();
		int fd = uffd(UFFD_FEATURE_EVENT_REMOVE);
		struct timespec pause = { 0, 100 * 1000 * 1000 };
		struct uffd_msg msg;
		pthread_t t;

		memset(s, 0x41, (size_t)ps);
		memset(d2, 0x42, (size_t)ps);
		reg(fd, d);
		reg(fd, d2);
		pthread_create(&t, NULL, discard, d2);
		nanosleep(&pause, NULL);	/* poll() on a blocking uffd says EPOLLERR at once */
		move_ro("pending event", fd, d, s);
		if (read(fd, &msg, sizeof(msg)) != sizeof(msg))
			return 1;
		pthread_join(t, NULL);
	}
	return 0;
}
