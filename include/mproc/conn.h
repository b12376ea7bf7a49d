/* SPDX-License-Identifier: MIT */
/* Connections: Pipe, Connection, wait, Listener and Client.
 *
 * The analog of multiprocessing.Pipe / multiprocessing.connection.  A
 * Connection moves whole messages ("byte strings") over a stream socket or a
 * pipe, framed exactly as CPython frames them, so a C program and a Python
 * program can talk through a Listener/Client pair:
 *
 *   4-byte big-endian signed length n, then n bytes; for n > 0x7FFFFFFF the
 *   length is written as -1 followed by n as an unsigned 64-bit big-endian.
 *
 * mp_conn_send()/mp_conn_recv() carry an mp_obj as a pickle (what Python's
 * Connection.send/recv do), so values cross to and from Python.  Over AF_UNIX
 * a value may also hold handles (a Connection, and the handle types of later
 * layers): their descriptors travel with the message (SCM_RIGHTS) and arrive
 * as working objects.
 *
 * Reference model.  An mp_conn is reference counted.  Whoever makes one
 * (mp_pipe, mp_client, mp_listener_accept, mp_conn_new_fd, mp_conn_recv of a
 * handle via mp_conn_from_obj + mp_conn_ref) owns one reference and drops it
 * with mp_conn_free(); mp_conn_ref() adds one (a handle value, mp_conn_obj(),
 * holds its own).  mp_conn_close() closes the descriptor for every holder at
 * once (Python's close()): every later call on the connection, through any
 * reference, returns MP_ECLOSED.  The memory goes with the last reference,
 * which also closes the descriptor if nobody did.
 *
 * In plain words: Python's conn.close() is mp_conn_close(), not
 * mp_conn_free().  mp_conn_free() only drops your reference: the
 * descriptor stays open while anything else holds one -- a handle value
 * (mp_conn_obj) in a tuple you have not freed, a process object's args
 * until the process has started (threading: until it ended).  A peer sees
 * the end of the connection (MP_EEOF) once every copy of the descriptor is
 * closed: in each process that has one (a child has its own), by
 * mp_conn_close() or by the last reference going.
 *
 * Threads.  Every function may be called from several threads on the same
 * connection: a send mutex keeps two senders from interleaving their
 * messages (better than Python, which may corrupt them), and a receive mutex
 * keeps receivers whole.  mp_conn_close() while another thread is blocked in
 * a call on the same connection does not wake that thread: its descriptor is
 * closed when that call returns (give blocking calls a timeout, or use
 * mp_wait, if another thread may close).
 *
 * Fork.  After fork() the child may use a connection it inherited if no
 * other thread of the parent was inside a call on it at that moment.  Both
 * processes then hold the same socket: as in Python, close your copy of the
 * end you do not use.
 *
 * Blocking.  Receives, poll, accept and connect take a `double timeout` by
 * the one rule (seconds; <= 0 does not block; MP_FOREVER = no limit; NaN
 * is MP_EINVAL).  In the options structs below a timeout field of 0 means
 * its documented default; a negative or NaN field is MP_EINVAL.  A timed-out receive
 * keeps what it already read: the next receive continues the same message.
 * Sends block until the whole message is written (a send timeout can be set
 * with mp_conn_set_send_timeout).  EINTR never surfaces.  SIGPIPE is never
 * raised by a socket connection (MSG_NOSIGNAL); a writer whose reader is gone
 * gets MP_EPIPE.
 *
 * Errors common to every call here: MP_EINVAL (NULL or bad argument),
 * MP_ECLOSED (the connection was closed), MP_ESTATE (wrong direction: a
 * read-only end asked to send or a write-only end to receive, or an end made
 * unreadable by an oversized message), MP_EEOF (the peer closed at a message
 * boundary), MP_EMALFORMED (the peer broke the framing: a negative length
 * other than the escape, or end of file inside a message), MP_ETIMEDOUT,
 * MP_ENOMEM, and -errno from the system (MP_EPIPE, MP_ECONNRESET...). */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "obj.h"
#include "mproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_conn mp_conn;
typedef struct mp_listener mp_listener;

/* The largest message a connection accepts unless told otherwise: 1 GiB.
 * Python has no limit; a finite default keeps a hostile or broken peer's
 * length field from making us buffer without bound.  Memory is never
 * reserved from the length alone: a receive buffer grows as bytes actually
 * arrive.  Raise it per connection (up to UINT64_MAX, e.g. for the > 4 GiB
 * messages Python can send) with mp_conn_set_max_recv. */
#define MP_CONN_DEFAULT_MAX_RECV ((uint64_t)1 << 30)

/* ---- Pipe ------------------------------------------------------------- */

/* Python's Pipe(duplex).  duplex != 0: *c1 and *c2 both send and receive
 * (a connected AF_UNIX socket pair).  duplex == 0: *c1 only receives and *c2
 * only sends.  Both ends are AF_UNIX sockets either way, so every message
 * may carry handles.  Returns 0, or -errno (MP_EMFILE...), MP_ENOMEM. */
MP_EXTERN int mp_pipe(mp_conn **c1, mp_conn **c2, int duplex);

/* Wrap an open descriptor (a stream socket or a pipe end; it may be in
 * either blocking mode) as a connection; the connection takes ownership of
 * `fd` on success only.  `readable`/`writable` set the directions it may be
 * used in (at least one).  The descriptor is made close-on-exec. */
MP_EXTERN int mp_conn_new_fd(mp_conn **out, int fd, int readable,
                             int writable);

/* ---- reference and lifetime ------------------------------------------ */

/* Another reference to `c` (returned; NULL passes through). */
MP_EXTERN mp_conn *mp_conn_ref(mp_conn *c);
/* Drop the caller's reference; the last one frees the connection (closing
 * its descriptor if it is still open).  Not Python's close() (that is
 * mp_conn_close): other references keep the descriptor open.  NULL is
 * ignored. */
MP_EXTERN void mp_conn_free(mp_conn *c);
/* Python's close(): close the descriptor now, for every holder.  Returns 0;
 * MP_ECLOSED if it was already closed. */
MP_EXTERN int mp_conn_close(mp_conn *c);

/* The descriptor (Python's fileno()), or MP_ECLOSED.  It stays owned by the
 * connection: do not close it, and do not read or write it while the
 * connection is in use. */
MP_EXTERN int mp_conn_fileno(const mp_conn *c);
/* 1 if the connection may receive / send, 0 if not (also when closed). */
MP_EXTERN int mp_conn_readable(const mp_conn *c);
MP_EXTERN int mp_conn_writable(const mp_conn *c);
/* 1 once mp_conn_close() was called. */
MP_EXTERN int mp_conn_closed(const mp_conn *c);

/* Largest message this connection will receive (0: the default,
 * MP_CONN_DEFAULT_MAX_RECV).  A longer message fails with MP_EMSGSIZE and
 * the connection stops being readable, as with recv_bytes' maxlength. */
MP_EXTERN int mp_conn_set_max_recv(mp_conn *c, uint64_t max_bytes);
MP_EXTERN uint64_t mp_conn_max_recv(const mp_conn *c);
/* Limit how long a send may block (MP_FOREVER, the default: no limit).  A
 * send that times out before writing anything returns MP_ETIMEDOUT and the
 * connection is intact; one that times out part-way through a message
 * returns MP_ETIMEDOUT and the connection stops being writable (the peer
 * would otherwise read a torn message). */
MP_EXTERN int mp_conn_set_send_timeout(mp_conn *c, double timeout);

/* Read-ahead, for an end that this object alone reads.  By default a
 * receive reads exactly one message (its header, then its payload): the
 * same end may then be read by several processes or handles in turn, as in
 * Python (Queue-like sharing under a lock), and a connection can be sent
 * away at any time.  With read-ahead on, a receive reads up to 64 KiB at a
 * time and keeps what follows the message for the next receives: one
 * system call per small message instead of two.  Only turn it on for an
 * end nobody else reads; sending the connection away (as a handle) while
 * it holds read-ahead bytes fails with MP_EBUSY, and so does turning it
 * off then.  Passed descriptors still arrive with their own message.
 * Returns 0, MP_EBUSY (a message is half received, or bytes are buffered
 * when turning it off). */
MP_EXTERN int mp_conn_set_readahead(mp_conn *c, int on);

/* ---- bytes ------------------------------------------------------------ */

/* Send `len` bytes of `buf` as one message (Python's send_bytes(buf)).  The
 * header and the data leave in one system call when the socket takes them.
 * Returns 0 or a code (MP_EPIPE / MP_ECONNRESET when the peer is gone). */
MP_EXTERN int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len);
/* send_bytes(buf, offset, size): the `size` bytes of `buf` (of `len` bytes)
 * starting at `offset`; size MP_CONN_REST means "to the end".  MP_EINVAL
 * when offset > len or offset + size > len (Python's ValueError). */
#define MP_CONN_REST SIZE_MAX
MP_EXTERN int mp_conn_send_bytes_at(mp_conn *c, const void *buf, size_t len,
                                    size_t offset, size_t size);

/* Receive one message (Python's recv_bytes(maxlength)).  On success *out is
 * a buffer of *len bytes to release with mp_free() (never NULL, even for an
 * empty message).  maxlength 0 means no limit of the call's own (the
 * connection's maximum, mp_conn_set_max_recv, still applies); a longer
 * message returns MP_EMSGSIZE without reading it and the connection is no
 * longer readable (later receives return MP_ESTATE), as in Python.
 * MP_EEOF when the peer closed; MP_ETIMEDOUT (the partial message is kept
 * for the next call). */
MP_EXTERN int mp_conn_recv_bytes(mp_conn *c, void **out, size_t *len,
                                 size_t maxlength, double timeout);

/* Receive one message into buf[offset .. size) (Python's
 * recv_bytes_into(buffer, offset)).  On success returns 0 and sets *nbytes
 * to the message length.  If the message does not fit, returns MP_ETOOSHORT,
 * sets *nbytes to the message length, and leaves the whole message to be
 * received by the next receive call (a bigger buffer, or recv_bytes) -- it
 * is not lost.  MP_EINVAL when offset > size. */
MP_EXTERN int mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t size,
                                      size_t offset, size_t *nbytes,
                                      double timeout);

/* ---- objects ---------------------------------------------------------- */

/* Send `o` as a pickle (Python's send(obj)).  A value holding handles needs
 * a connection that passes descriptors (AF_UNIX): MP_ENOTSUP otherwise, and
 * MP_ELIMIT beyond 253 descriptors in one message.  Codec errors of
 * mp_pickle_dumps pass through (MP_ECYCLE...). */
MP_EXTERN int mp_conn_send(mp_conn *c, const mp_obj *o);
/* Receive one pickled value (Python's recv()); *out is a new reference.  A
 * pickle that does not decode returns the codec's code (MP_EMALFORMED,
 * MP_ECYCLE...) and the connection stays usable: the message was consumed.
 * Descriptors that came with the message become the handles of the value;
 * any left over are closed. */
MP_EXTERN int mp_conn_recv(mp_conn *c, mp_obj **out, double timeout);

/* ---- poll and wait ---------------------------------------------------- */

/* Python's poll(timeout): 1 if a message (or end of file) is waiting, 0 if
 * not within `timeout`, or a negative code.  Poll before a receive to
 * receive without blocking -- unless another thread or process reads the
 * same end. */
MP_EXTERN int mp_conn_poll(mp_conn *c, double timeout);

/* What mp_wait waits on. */
typedef enum mp_wait_kind {
  MP_WAIT_CONN = 1,     /* readable: a message waits, or the peer closed */
  MP_WAIT_LISTENER = 2, /* a client is connecting or authenticating */
  MP_WAIT_FD = 3        /* any descriptor: readable, hung up or in error
                           (e.g. a process sentinel) */
} mp_wait_kind;

typedef struct mp_waitable {
  mp_wait_kind kind;
  union {
    mp_conn *conn;
    mp_listener *listener;
    int fd;
  } u;
  int ready; /* set by mp_wait: 1 if this item is ready, else 0 */
} mp_waitable;

/* Helpers for array literals:
 *   mp_waitable w[] = { MP_WAITABLE_CONN(r1), MP_WAITABLE_FD(sentinel) }; */
#define MP_WAITABLE_CONN(c) ((mp_waitable){ .kind = MP_WAIT_CONN, .u.conn = (c) })
#define MP_WAITABLE_LISTENER(l)                                              \
  ((mp_waitable){ .kind = MP_WAIT_LISTENER, .u.listener = (l) })
#define MP_WAITABLE_FD(f) ((mp_waitable){ .kind = MP_WAIT_FD, .u.fd = (f) })

/* Python's connection.wait(object_list, timeout): block until at least one
 * item is ready or `timeout` passes (the one rule: <= 0 does not block,
 * MP_FOREVER has no limit, NaN is MP_EINVAL; Python's None is MP_FOREVER).  Sets each item's `ready` and returns how many are ready
 * (0 when the time ran out: Python's empty list).  A connection whose peer closed is ready
 * (its receive returns MP_EEOF).  A closed connection or listener, a
 * negative fd, or a write-only connection is MP_EINVAL / MP_ECLOSED /
 * MP_ESTATE.  At most 65536 items. */
MP_EXTERN int mp_wait(mp_waitable *items, size_t n, double timeout);

/* ---- addresses --------------------------------------------------------
 * Addresses are strings, read by these rules in order:
 *   "@name"           AF_UNIX in Linux's abstract namespace (Python's
 *                      '\0name')
 *   containing '/'    AF_UNIX path ("/tmp/x.sock", "./a:b")
 *   "[v6addr]:port"   AF_INET6 (starts with '['), e.g. "[::1]:6000"
 *   "host:port"       AF_INET (IPv4, like Python's (host, port) tuple) --
 *                      any other string containing ':' (the last one
 *                      separates the port); "localhost:0" picks a free
 *                      port, an empty host is any address (listener) or
 *                      this host (client)
 *   anything else     AF_UNIX path relative to the current directory
 *                      ("x.sock")
 * The port is a decimal number in 0-65535 and nothing else: "localhost:",
 * "localhost:-1", "localhost:0x10", "localhost: 1", "localhost:65536" and
 * "a:b" are MP_EINVAL (mp_errdetail() says why), never a socket file named
 * like that.  A path containing ':' is written with a '/': "./a:b".
 * mp_listener_address() gives the bound address in the same syntax
 * ("127.0.0.1:41234", "[::1]:6000", "/tmp/x.sock", "@name"), which
 * mp_client() accepts. */

/* ---- Listener --------------------------------------------------------- */

typedef struct mp_listener_opts {
  /* listen(2) backlog (0: 128; Python's default is 1, which only makes a
   * burst of clients wait). */
  int backlog;
  /* The authentication key; NULL: no authentication (Python's
   * authkey=None).  A non-NULL key of length 0 is a key: the handshake runs
   * with it (as CPython 3.13 does; 3.8-3.12 listeners skip it). */
  const void *authkey;
  size_t authkey_len;
  /* Longest a client may take to complete the handshake, counted from its
   * connect (0: 10 s; MP_FOREVER: no limit).  A client that takes longer is
   * dropped silently. */
  double handshake_timeout;
  /* Most handshakes run at once (0: 64).  accept() drives them
   * concurrently, so a client that connects and says nothing does not hold
   * up the others.  When all are taken, a new client replaces the oldest
   * handshake in progress: a real client needs a round trip or two, so
   * only a flood faster than that can crowd it out. */
  int max_pending;
  /* Refuse peers that answer our challenge with legacy HMAC-MD5 (CPython
   * <= 3.11) and refuse to answer legacy 20-byte challenges.  0 (the
   * default) accepts them. */
  int refuse_legacy_md5;
  /* Receive limit of accepted connections (0: MP_CONN_DEFAULT_MAX_RECV). */
  uint64_t max_recv;
} mp_listener_opts;

/* Python's Listener(address, backlog=..., authkey=...).  `address` NULL or
 * "" makes an AF_UNIX socket in a new private directory under $TMPDIR (or
 * /tmp), removed with the listener.  An AF_UNIX path is unlinked when the
 * listener closes; bind fails with MP_EADDRINUSE if it exists (as Python).
 * TCP sockets get SO_REUSEADDR.  Returns 0, MP_EINVAL (bad address syntax;
 * the reason is in mp_errdetail()), MP_ENOTFOUND (unknown host), -errno. */
MP_EXTERN int mp_listener_new(mp_listener **out, const char *address,
                              const mp_listener_opts *opts);

/* Python's accept(): the next client that connected and (with an authkey)
 * authenticated.  Several handshakes proceed at once (see opts); a client
 * that does not finish within handshake_timeout, or hangs up during the
 * handshake, is dropped and accept goes on waiting.  Returns 0 and a new
 * connection in *out; MP_EAUTH when a client failed authentication (it was
 * sent #FAILURE# and closed; mp_errdetail() names it; call accept again to
 * serve the others -- as Python raises AuthenticationError from accept);
 * MP_ETIMEDOUT; MP_ECLOSED.  Thread-safe (accepts are serialised). */
MP_EXTERN int mp_listener_accept(mp_listener *l, mp_conn **out,
                                 double timeout);

/* The bound address (see above); valid until the listener is freed.  NULL
 * after close. */
MP_EXTERN const char *mp_listener_address(const mp_listener *l);
/* The peer address of the last accepted connection: "ip:port" or
 * "[ip6]:port" for TCP, "" for an unnamed AF_UNIX peer, its path or "@name"
 * for a bound one; NULL if none was accepted yet (Python's None).  The
 * string is valid until the next accept or free.  Not synchronised with a
 * concurrent accept. */
MP_EXTERN const char *mp_listener_last_accepted(const mp_listener *l);
/* The listening socket, or MP_ECLOSED. */
MP_EXTERN int mp_listener_fileno(const mp_listener *l);
/* Stop listening: closes the socket and any handshakes in progress, unlinks
 * the AF_UNIX path and removes a private directory.  Returns 0 or
 * MP_ECLOSED.  Must not race with an accept in another thread. */
MP_EXTERN int mp_listener_close(mp_listener *l);
/* Close (if needed) and free.  NULL is ignored. */
MP_EXTERN void mp_listener_free(mp_listener *l);

/* ---- Client ----------------------------------------------------------- */

typedef struct mp_client_opts {
  /* As for the listener; NULL: no authentication. */
  const void *authkey;
  size_t authkey_len;
  /* Limit for connect plus handshake (0: the default, no limit, as Python).
   * Past it: MP_ETIMEDOUT. */
  double timeout;
  /* As for the listener. */
  int refuse_legacy_md5;
  uint64_t max_recv;
} mp_client_opts;

/* Python's Client(address, authkey=...): connect and, with a key, run the
 * handshake (answer the listener's challenge, then challenge it).  Returns
 * 0; MP_EAUTH (wrong key on either side, or a peer that does not speak the
 * protocol); MP_ECONNREFUSED, MP_ENOENT (no such AF_UNIX path), MP_EINVAL
 * (bad address), MP_ENOTFOUND (unknown host), MP_ETIMEDOUT, MP_EEOF (the
 * listener hung up during the handshake), -errno. */
MP_EXTERN int mp_client(mp_conn **out, const char *address,
                        const mp_client_opts *opts);

/* ---- handshake on any connection --------------------------------------
 * Python's deliver_challenge / answer_challenge, for protocols that
 * authenticate a connection made otherwise (managers do both, deliver
 * first on the server).  Each blocks for at most `timeout`.  MP_EAUTH on a
 * wrong key or a protocol error (details in mp_errdetail()). */
MP_EXTERN int mp_conn_deliver_challenge(mp_conn *c, const void *authkey,
                                        size_t authkey_len, double timeout);
MP_EXTERN int mp_conn_answer_challenge(mp_conn *c, const void *authkey,
                                       size_t authkey_len, double timeout);

/* ---- Connections inside values ----------------------------------------
 * A connection travels inside an mp_obj as a handle of type
 * "mproc.Connection" (registered when the library loads).  Its reduced
 * state is the tuple (readable, writable) and one descriptor; the rebuilt
 * connection owns a duplicate of it. */

/* A handle value holding its own reference to `c` (NULL on failure). */
MP_EXTERN mp_obj *mp_conn_obj(mp_conn *c);
/* The connection inside a handle value (borrowed: valid while `o` lives;
 * take mp_conn_ref() to keep it), or NULL if `o` is not a connection. */
MP_EXTERN mp_conn *mp_conn_from_obj(const mp_obj *o);
/* The handle type itself, for code that reduces values (processes). */
MP_EXTERN const mp_handle_type *mp_conn_handle_type(void);

#ifdef __cplusplus
}
#endif
#endif
