/* SPDX-License-Identifier: MIT */
/* File-descriptor helpers shared by every layer: close-on-exec creation,
 * EINTR-safe full reads and writes, polling with a deadline, and passing
 * descriptors over AF_UNIX sockets (SCM_RIGHTS).
 *
 * Every function returns 0 (or a documented non-negative count) or a
 * negative code: -errno for system errors, MP_EEOF, MP_ETIMEDOUT, MP_ELIMIT.
 * EINTR never surfaces: interrupted calls are restarted (with the remaining
 * time, for deadlines).  Every fd these functions create is CLOEXEC and,
 * where they choose the number, is >= 3 so stdio stays stdio. */
#ifndef MPROC_CORE_FD_H
#define MPROC_CORE_FD_H

#include <stddef.h>
#include <sys/uio.h>

#include "core/internal.h"

/* Most descriptors one mp__send_fds call carries (the kernel's SCM_MAX_FD). */
#define MP__MAX_FDS_PER_MSG 253

/* close(2) that preserves errno and ignores EINTR (Linux always releases the
 * descriptor).  Negative fds are ignored. */
void mp__close(int fd);

int mp__fd_set_cloexec(int fd, int on);
int mp__fd_set_nonblock(int fd, int on);
/* 1 if open, 0 if not. */
int mp__fd_is_open(int fd);

/* Move a freshly made fd off 0..2 (a program that closed stdin would
 * otherwise get our pipe or segment there, and a later "stdin" would be
 * it): fd itself if > 2, else a CLOEXEC copy >= 3 and fd closed.  On
 * failure fd is closed too and -errno returned. */
int mp__fd_off_stdio(int fd);

/* pipe2 / socketpair(AF_UNIX) / dup with CLOEXEC. */
int mp__pipe(int fds[2]);
int mp__socketpair(int type, int sv[2]); /* SOCK_STREAM, SOCK_SEQPACKET... */
int mp__dup(int fd);                     /* new fd >= 3 */

/* Write all `len` bytes (blocking fd).  -EPIPE when the reader is gone
 * (SIGPIPE is never raised: sockets use MSG_NOSIGNAL; for pipes the caller
 * must ignore or block SIGPIPE -- see mp__ignore_sigpipe). */
int mp__write_all(int fd, const void *buf, size_t len);
/* writev all of iov (the array is modified as it advances). */
int mp__writev_all(int fd, struct iovec *iov, int iovcnt);
/* Read exactly `len` bytes.  MP_EEOF when the stream ends first; *got (may
 * be NULL) tells how many bytes did arrive (0: EOF at a clean boundary). */
int mp__read_full(int fd, void *buf, size_t len, size_t *got);

/* The one retry rule after a read/write/send/recv on `fd` returned < 0:
 * EINTR retries at once; EAGAIN/EWOULDBLOCK waits (poll) for `events`
 * until the deadline and then retries.  Returns 0 to retry, else the code to
 * return (MP_ETIMEDOUT, a poll error, or -errno of the failed call).
 *     while ((n = read(fd, p, len)) < 0)
 *       if ((rc = mp__io_retry(fd, POLLIN, dl)) != 0)
 *         return rc;                                                    */
int mp__io_retry(int fd, short events, mp__deadline deadline);
/* Step an iovec array past `n` bytes just transferred (zero-length entries
 * at the front are skipped too). */
void mp__iov_advance(struct iovec **iov, int *iovcnt, size_t n);

/* Wait until `fd` has one of `events` (POLLIN, POLLOUT...) or the deadline
 * passes.  Returns the revents (> 0; POLLHUP/POLLERR count as ready),
 * MP_ETIMEDOUT, or -errno. */
int mp__poll_fd(int fd, short events, mp__deadline deadline);

/* Send `len` (>= 1) bytes of data with `nfds` descriptors attached to the
 * first byte (nfds <= MP__MAX_FDS_PER_MSG, else MP_ELIMIT).  The whole of
 * the data is sent (blocking).  The descriptors stay the caller's. */
int mp__send_fds(int sock, const void *buf, size_t len, const int *fds,
                 size_t nfds);
/* One recvmsg: up to `len` bytes into buf (*got, 0 = EOF) and up to `maxfds`
 * descriptors into fds (*nfds; received CLOEXEC, now the caller's).  If the
 * sender attached more descriptors than fit, all received ones are closed and
 * MP_ELIMIT is returned. */
int mp__recv_fds(int sock, void *buf, size_t len, size_t *got, int *fds,
                 size_t maxfds, size_t *nfds);
/* The same waiting at most until `deadline` (0: not at all) for a message:
 * MP_ETIMEDOUT when none came. */
int mp__recv_fds_until(int sock, void *buf, size_t len, size_t *got,
                       int *fds, size_t maxfds, size_t *nfds,
                       mp__deadline deadline);

/* Set SIGPIPE to ignored once per process unless the program installed a
 * handler of its own (writes to a closed pipe then fail with -EPIPE). */
void mp__ignore_sigpipe(void);

#endif
