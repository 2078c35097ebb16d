/* Copies of this process's memory that cannot fault: the reads of _stacks.c.
 *
 * A range that was freed and unmapped under a read must fail, not raise SIGSEGV (no
 * signal handler of ours may fight the host's). Two kernel paths give that:
 *
 * - process_vm_readv on this very process: the reference. It pins every page it reads,
 *   which costs a few microseconds a call on a virtual machine.
 * - writev of the ranges into a pipe of our own, then one read back: the kernel copies
 *   from our address space with copy_from_user, which returns EFAULT on an unmapped
 *   page. Cheaper: see "The native stack reader" in docs/performance.md.
 *
 * The pipe is used only while it is provably ours. The host could close its descriptor
 * and open something else under the same number; a write there would put our bytes in
 * its file, or a read there take its data. So before every batch the descriptor's inode
 * is compared with the pipe's (one fstat: the pipe is reopened read-write, one
 * descriptor for both ends), the descriptor sits above the numbers a process hands out
 * first, and once the check fails the pipe is given up for good (its number left alone:
 * it is no longer ours) and process_vm_readv does every read. Any other failure of the pipe
 * path, a short write included (a range that faulted, or a pipe too small), repeats
 * the batch with process_vm_readv, so both paths read exactly the same bytes.
 *
 * One mutex orders the users (the native thread and walks from Python). In a child of
 * fork() the inherited pipe is shared with the parent: the child drops it and makes its
 * own at its first read.
 */
#ifndef SPANGAP_SAFECOPY_H
#define SPANGAP_SAFECOPY_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define SAFECOPY_PIPE_BYTES (1 << 20) /* asked for; the kernel may give less */
#define SAFECOPY_FD_FLOOR 200         /* descriptors at or above this, when allowed */

typedef struct {
    pthread_mutex_t mutex;
    int read_fd, write_fd; /* -1 when none */
    ino_t inode;
    size_t capacity;
    int given_up;              /* the descriptor stopped being ours: never again */
    int disabled;              /* copy_path("readv"): process_vm_readv only */
    unsigned long long piped;  /* batches copied through the pipe */
    unsigned long long readv;  /* batches copied with process_vm_readv */
    unsigned long long lost;   /* times the pipe was found not ours */
} SafeCopy;

static _Atomic pid_t safecopy_pid;
static SafeCopy safecopy = {PTHREAD_MUTEX_INITIALIZER, -1, -1, 0, 0, 0, 0, 0, 0, 0};

static void
safecopy_close(SafeCopy *s)
{
    if (s->read_fd != s->write_fd)
        close(s->read_fd);
    close(s->write_fd);
    s->read_fd = s->write_fd = -1;
}

/* Move `fd` above SAFECOPY_FD_FLOOR when the limit leaves room; the descriptor to use. */
static int
safecopy_lift(int fd)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur <= 2 * SAFECOPY_FD_FLOOR)
        return fd;
    int lifted = fcntl(fd, F_DUPFD_CLOEXEC, SAFECOPY_FD_FLOOR);
    if (lifted < 0)
        return fd;
    close(fd);
    return lifted;
}

/* Make the pipe (under the mutex): one descriptor that both writes and reads it (the
 * pipe reopened read-write through /proc), so one fstat proves it ours; two where /proc
 * is not mounted. 0, or -1 when there is none to use. */
static int
safecopy_open(SafeCopy *s)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
    int both = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (both >= 0) {
        close(fds[0]);
        close(fds[1]);
        s->read_fd = s->write_fd = safecopy_lift(both);
    }
    else {
        s->read_fd = safecopy_lift(fds[0]);
        s->write_fd = safecopy_lift(fds[1]);
    }
    (void)fcntl(s->write_fd, F_SETPIPE_SZ, SAFECOPY_PIPE_BYTES);
    int capacity = fcntl(s->write_fd, F_GETPIPE_SZ);
    struct stat st;
    if (capacity <= 0 || fstat(s->write_fd, &st) != 0) {
        safecopy_close(s);
        return -1;
    }
    s->capacity = (size_t)capacity;
    s->inode = st.st_ino;
    return 0;
}

/* Whether the descriptors are still our pipe (under the mutex). */
static int
safecopy_still_ours(const SafeCopy *s)
{
    struct stat st;
    if (fstat(s->write_fd, &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_ino != s->inode)
        return 0;
    return s->read_fd == s->write_fd
           || (fstat(s->read_fd, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == s->inode);
}

/* Empty the pipe of `left` bytes a short write left in it. */
static void
safecopy_drain(const SafeCopy *s, size_t left)
{
    char sink[4096];
    while (left > 0) {
        ssize_t got = read(s->read_fd, sink, left < sizeof(sink) ? left : sizeof(sink));
        if (got <= 0)
            break;
        left -= (size_t)got;
    }
}

/* Through the pipe: 0 when all `want` bytes were copied, -1 otherwise (under the mutex). */
static int
safecopy_piped(SafeCopy *s, const struct iovec *local, const struct iovec *remote,
               unsigned long n, size_t want)
{
    if (s->given_up || s->disabled)
        return -1;
    if (s->write_fd < 0 && safecopy_open(s) < 0)
        return -1;
    if (want > s->capacity)
        return -1;
    if (!safecopy_still_ours(s)) {
        s->given_up = 1; /* the numbers may be the host's now: never touched again */
        s->read_fd = s->write_fd = -1;
        s->lost++;
        return -1;
    }
    /* The system call itself, not libc's writev: a sanitizer's interceptor would check
     * the ranges as if the program read them, and these may be freed memory by design. */
    ssize_t put = syscall(SYS_writev, s->write_fd, remote, (int)n);
    if (put <= 0)
        return -1; /* EFAULT on the first range: nothing to drain */
    if ((size_t)put != want) {
        safecopy_drain(s, (size_t)put);
        return -1;
    }
    ssize_t got = readv(s->read_fd, local, (int)n);
    if (got != (ssize_t)want) {
        if (got >= 0 && (size_t)got < want)
            safecopy_drain(s, want - (size_t)got);
        return -1;
    }
    return 0;
}

/* Copy the `n` ranges `remote` of this process into `local` (n <= IOV_MAX); 0 when every
 * byte was read, -1 when any range was not readable. */
static int
safecopy_ranges(const struct iovec *local, const struct iovec *remote, unsigned long n)
{
    size_t want = 0;
    for (unsigned long i = 0; i < n; i++)
        want += local[i].iov_len;
    SafeCopy *s = &safecopy;
    pthread_mutex_lock(&s->mutex);
    int status = safecopy_piped(s, local, remote, n, want);
    if (status == 0)
        s->piped++;
    else {
        ssize_t got = process_vm_readv(atomic_load(&safecopy_pid), local, n, remote, n, 0);
        status = got == (ssize_t)want ? 0 : -1;
        s->readv++;
    }
    pthread_mutex_unlock(&s->mutex);
    return status;
}

/* In a child of fork(): the pipe is the parent's too, so it is closed, not used. */
static void
safecopy_after_fork_child(void)
{
    SafeCopy *s = &safecopy;
    pthread_mutex_init(&s->mutex, NULL);
    if (s->write_fd >= 0)
        safecopy_close(s);
    atomic_store(&safecopy_pid, getpid());
}

#endif
