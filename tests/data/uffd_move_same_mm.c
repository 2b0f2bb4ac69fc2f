/* Which callers may use a userfaultfd for UFFDIO_MOVE: the rule is the address space (ctx->mm),
 * not the process.  Prints one line per case: "clone_vm: ok" / "execve: EINVAL".  Exit 77: skip. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
/* UFFDIO_MOVE for uapi headers older than 6.8: the test passes -include uffdio_move_compat.h */

static int fd;
static char *src, *dst;
static long ps;
static int child_rc = -1;

static int do_move(void)
{
	struct uffdio_move mv = { .dst = (unsigned long)dst, .src = (unsigned long)src,
				  .len = (unsigned long)ps, .mode = 0, .move = 0 };
	return ioctl(fd, UFFDIO_MOVE, &mv) == 0 ? 0 : errno;
}

static int in_clone(void *arg)
{
	(void)arg;
	child_rc = do_move();		/* same mm: the write is visible to the parent */
	return 0;
}

int main(int argc, char **argv)
{
	ps = sysconf(_SC_PAGESIZE);
	if (argc == 3 && strcmp(argv[1], "--after-exec") == 0) {
		/* a new image: a new mm, the old uffd inherited; any range will do, the mm check
		 * comes before the ranges are looked at */
		fd = atoi(argv[2]);
		src = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		dst = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int err = do_move();
		printf("execve: %s\n", err == EINVAL ? "EINVAL" : err ? strerror(err) : "ok");
		return 0;
	}
	fd = syscall(SYS_userfaultfd, UFFD_USER_MODE_ONLY);	/* no O_CLOEXEC: survives execve */
	if (fd < 0) { printf("SKIP: userfaultfd: %s\n", strerror(errno)); return 77; }
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	if (ioctl(fd, UFFDIO_API, &api) != 0) { printf("SKIP: UFFDIO_API: %s\n", strerror(errno)); return 77; }
	src = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(src, 'm', ps);
	struct uffdio_register reg = { .range = { .start = (unsigned long)dst, .len = ps },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) { perror("UFFDIO_REGISTER"); return 1; }

	size_t stack_size = 1 << 16;
	char *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pid_t pid = clone(in_clone, stack + stack_size, CLONE_VM | SIGCHLD, NULL);
	if (pid < 0) { perror("clone"); return 1; }
	waitpid(pid, NULL, 0);
	printf("clone_vm: %s\n", child_rc == 0 && dst[0] == 'm' ? "ok" : child_rc ? strerror(child_rc) : "no data");

	char fdarg[16];
	snprintf(fdarg, sizeof(fdarg), "%d", fd);
	fflush(stdout);
	execl("/proc/self/exe", argv[0], "--after-exec", fdarg, (char *)NULL);
	perror("execl");
	return 1;
}
