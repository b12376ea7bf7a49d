/* SPDX-License-Identifier: MIT */
/* Listener and Client: addresses, authentication, bad peers, floods. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"
/* Tests link the static library: internal helpers are testable directly. */
#include "core/hmac.h"

#define KEY "secret password"
#define KEYLEN (sizeof KEY - 1)

static const mp_listener_opts keyed = { .authkey = KEY, .authkey_len = KEYLEN };
static const mp_client_opts ckeyed = { .authkey = KEY, .authkey_len = KEYLEN,
                                       .timeout = 30 };

struct client_job {
  char address[256];
  mp_client_opts opts;
  int rc;
  int echo; /* send "ping", expect "pong" */
};

static void *
client_thread(void *arg)
{
  struct client_job *j = arg;
  mp_conn *c = NULL;
  j->rc = mp_client(&c, j->address, &j->opts);
  if (j->rc == 0 && j->echo) {
    void *p;
    size_t n;
    j->rc = mp_conn_send_bytes(c, "ping", 4);
    if (!j->rc)
      j->rc = mp_conn_recv_bytes(c, &p, &n, 0, 30);
    if (!j->rc) {
      if (n != 4 || memcmp(p, "pong", 4))
        j->rc = -1;
      mp_free(p);
    }
  }
  mp_conn_free(c);
  return NULL;
}

static void
serve_one(mp_listener *l)
{
  mp_conn *c;
  MP_ASSERT_OK(mp_listener_accept(l, &c, 30));
  mp_test_recv_expect(c, "ping", 4, 30);
  MP_ASSERT_OK(mp_conn_send_bytes(c, "pong", 4));
  mp_conn_free(c);
}

static void
round_trip(const char *address, const mp_listener_opts *lo,
           const mp_client_opts *co)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, address, lo));
  assert_null(mp_listener_last_accepted(l));
  struct client_job j = { .opts = *co, .echo = 1 };
  snprintf(j.address, sizeof j.address, "%s", mp_listener_address(l));
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  assert_non_null(mp_listener_last_accepted(l));
  mp_listener_free(l);
}

static void
test_default_address(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, NULL, &keyed));
  char path[256];
  snprintf(path, sizeof path, "%s", mp_listener_address(l));
  assert_non_null(strstr(path, "/mproc-"));
  assert_non_null(strstr(path, "/listener-"));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  struct client_job j = { .opts = ckeyed, .echo = 1 };
  snprintf(j.address, sizeof j.address, "%s", path);
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  assert_string_equal(mp_listener_last_accepted(l), "");
  MP_ASSERT_OK(mp_listener_close(l));
  MP_ASSERT_ERR(mp_listener_close(l), MP_ECLOSED);
  assert_null(mp_listener_address(l));
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 0), MP_ECLOSED);
  MP_ASSERT_ERR(mp_listener_fileno(l), MP_ECLOSED);
  /* the socket file and its private directory are gone */
  assert_int_equal(stat(path, &st), -1);
  *strrchr(path, '/') = '\0';
  assert_int_equal(stat(path, &st), -1);
  mp_listener_free(l);
}

static void
test_tcp(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "localhost:0", &keyed));
  const char *a = mp_listener_address(l);
  assert_true(strncmp(a, "127.0.0.1:", 10) == 0);
  assert_true(atoi(a + 10) > 0);
  struct client_job j = { .opts = ckeyed, .echo = 1 };
  snprintf(j.address, sizeof j.address, "%s", a);
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  const char *last = mp_listener_last_accepted(l);
  assert_true(strncmp(last, "127.0.0.1:", 10) == 0);
  mp_listener_free(l);
}

static void
test_ipv6(void **state)
{
  int s = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a = { .sin6_family = AF_INET6,
                            .sin6_addr = IN6ADDR_LOOPBACK_INIT };
  int ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0;
  if (s >= 0)
    close(s);
  if (!ok) {
    printf("# skipped: no IPv6 loopback here\n");
    skip();
  }
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "[::1]:0", &keyed));
  assert_true(strncmp(mp_listener_address(l), "[::1]:", 6) == 0);
  mp_listener_free(l);
  round_trip("[::1]:0", &keyed, &ckeyed);
}

static void
test_path_and_abstract(void **state)
{
  char path[128];
  snprintf(path, sizeof path, "/tmp/mproc-test-%d.sock", (int)getpid());
  unlink(path);
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, path, &keyed));
  assert_string_equal(mp_listener_address(l), path);
  /* bind refuses an existing path, as Python */
  mp_listener *l2;
  MP_ASSERT_ERR(mp_listener_new(&l2, path, &keyed), MP_EADDRINUSE);
  mp_listener_free(l);
  struct stat st;
  assert_int_equal(stat(path, &st), -1); /* unlinked on close */
  round_trip(path, &keyed, &ckeyed);

  char abs[64];
  snprintf(abs, sizeof abs, "@mproc-test-%d", (int)getpid());
  MP_ASSERT_OK(mp_listener_new(&l, abs, &keyed));
  assert_string_equal(mp_listener_address(l), abs);
  mp_listener_free(l);
  round_trip(abs, &keyed, &ckeyed);
}

/* Entries of directory `d` other than . and .. */
static int
count_entries(const char *d)
{
  DIR *dir = opendir(d);
  assert_non_null(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(dir);
  return n;
}

/* A host:port with a mistyped port is MP_EINVAL with a reason, for the
 * listener and the client, and no socket file appears in the current
 * directory; a path with ':' is written with a '/' and is AF_UNIX. */
static void
test_bad_port_is_not_a_path(void **state)
{
  char old[4096], dir[] = "/tmp/mproc-addr-XXXXXX";
  assert_non_null(getcwd(old, sizeof old));
  assert_non_null(mkdtemp(dir));
  assert_int_equal(chdir(dir), 0);
  static const char *const bad[] = {
      "localhost:-1", "localhost:",      "localhost:0x10",
      "localhost:65536", "localhost: 1", "localhost:+1",
      "localhost:1 ",  "127.0.0.1:99999999999999999999", "a:b",
      ":",             "[::1]:",         "[::1]:http",
      "[::1]:-1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mp_listener *l = NULL;
    mp_conn *c = NULL;
    int rc = mp_listener_new(&l, bad[i], NULL);
    if (rc != MP_EINVAL)
      fail_msg("listener '%s' -> %s, expected MP_EINVAL", bad[i],
               mp_err_name(rc));
    if (!strstr(mp_errdetail(), "port") || !strstr(mp_errdetail(), bad[i]))
      fail_msg("listener '%s': detail '%s'", bad[i], mp_errdetail());
    rc = mp_client(&c, bad[i], NULL);
    if (rc != MP_EINVAL)
      fail_msg("client '%s' -> %s, expected MP_EINVAL", bad[i],
               mp_err_name(rc));
    if (!strstr(mp_errdetail(), "port") || !strstr(mp_errdetail(), bad[i]))
      fail_msg("client '%s': detail '%s'", bad[i], mp_errdetail());
    assert_int_equal(count_entries("."), 0);
  }
  /* the detail says which rule was broken */
  mp_listener *l;
  MP_ASSERT_ERR(mp_listener_new(&l, "localhost:65536", NULL), MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "out of range"));
  MP_ASSERT_ERR(mp_listener_new(&l, "localhost:0x10", NULL), MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "not a decimal number"));
  assert_non_null(strstr(mp_errdetail(), "./a:b"));
  MP_ASSERT_ERR(mp_listener_new(&l, "localhost:", NULL), MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "no port"));

  /* leading zeros are still a decimal number */
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:00000", NULL));
  assert_true(strncmp(mp_listener_address(l), "127.0.0.1:", 10) == 0);
  assert_true(atoi(mp_listener_address(l) + 10) > 0);
  mp_listener_free(l);
  assert_int_equal(count_entries("."), 0);

  /* "./a:b" is the AF_UNIX path a:b in the current directory */
  mp_conn *c;
  MP_ASSERT_ERR(mp_client(&c, "./a:b", NULL), MP_ENOENT);
  MP_ASSERT_OK(mp_listener_new(&l, "./a:b", &keyed));
  assert_string_equal(mp_listener_address(l), "./a:b");
  struct stat st;
  assert_int_equal(stat("a:b", &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(count_entries("."), 1);
  struct client_job j = { .opts = ckeyed, .echo = 1 };
  snprintf(j.address, sizeof j.address, "./a:b");
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  mp_listener_free(l);
  assert_int_equal(count_entries("."), 0); /* unlinked on close */

  assert_int_equal(chdir(old), 0);
  assert_int_equal(rmdir(dir), 0);
}

static void
test_no_key(void **state)
{
  static const mp_client_opts none = { .timeout = 30 };
  round_trip("127.0.0.1:0", NULL, &none);
  round_trip(NULL, NULL, &none);
}

static void
test_empty_key_is_a_key(void **state)
{
  static const mp_listener_opts lo = { .authkey = "", .authkey_len = 0 };
  static const mp_client_opts co = { .authkey = "", .authkey_len = 0,
                                     .timeout = 30 };
  round_trip(NULL, &lo, &co);
  /* a keyed client does not get in with the empty key */
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, NULL, &lo));
  struct client_job j = { .opts = ckeyed };
  snprintf(j.address, sizeof j.address, "%s", mp_listener_address(l));
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 30), MP_EAUTH);
  pthread_join(t, NULL);
  MP_ASSERT_ERR(j.rc, MP_EAUTH);
  mp_listener_free(l);
}

static void
test_wrong_key_then_serve_others(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", &keyed));
  struct client_job bad = { .opts = ckeyed };
  bad.opts.authkey = "bad";
  bad.opts.authkey_len = 3;
  snprintf(bad.address, sizeof bad.address, "%s", mp_listener_address(l));
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &bad);
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 30), MP_EAUTH);
  assert_non_null(strstr(mp_errdetail(), "digest received was wrong"));
  pthread_join(t, NULL);
  MP_ASSERT_ERR(bad.rc, MP_EAUTH);
  /* the listener goes on serving */
  struct client_job good = { .opts = ckeyed, .echo = 1 };
  snprintf(good.address, sizeof good.address, "%s", mp_listener_address(l));
  pthread_create(&t, NULL, client_thread, &good);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(good.rc);
  /* a keyless client against a keyed listener fails too (on the listener
   * side; the client itself gets the challenge as its first message) */
  mp_listener_free(l);
}

/* Connect a raw socket to an address of the listener (TCP). */
static int
raw_connect(const char *address)
{
  const char *colon = strrchr(address, ':');
  struct sockaddr_in a = { .sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(colon + 1)) };
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s >= 0);
  assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
  return s;
}

static void
test_flood_of_silent_clients(void **state)
{
  /* 40 clients connect and never speak, more than the 8 handshakes the
   * listener runs at once; a real client behind them is served long before
   * any of their handshakes times out (60 s). */
  static const mp_listener_opts lo = { .authkey = KEY, .authkey_len = KEYLEN,
                                       .handshake_timeout = 60,
                                       .max_pending = 8, .backlog = 64 };
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", &lo));
  enum { SILENT = 40 };
  int silent[SILENT];
  for (int i = 0; i < SILENT; i++)
    silent[i] = raw_connect(mp_listener_address(l));
  for (int round = 0; round < 3; round++) {
    struct client_job good = { .opts = ckeyed, .echo = 1 };
    snprintf(good.address, sizeof good.address, "%s", mp_listener_address(l));
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &good);
    serve_one(l);
    pthread_join(t, NULL);
    MP_ASSERT_OK(good.rc);
  }
  /* the oldest silent clients were dropped to make room: hung up on
   * (perhaps after being sent the challenge) */
  uint8_t buf[128];
  ssize_t k = read(silent[0], buf, sizeof buf);
  if (k == 63)
    k = read(silent[0], buf, sizeof buf);
  assert_int_equal(k, 0);
  for (int i = 0; i < SILENT; i++)
    close(silent[i]);
  mp_listener_free(l);
}

static void
test_handshake_timeout_drops_silent_client(void **state)
{
  static const mp_listener_opts lo = { .authkey = KEY, .authkey_len = KEYLEN,
                                       .handshake_timeout = 0.1 };
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", &lo));
  int s = raw_connect(mp_listener_address(l));
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 0.5), MP_ETIMEDOUT);
  /* the silent client got the challenge, then was hung up on */
  uint8_t buf[128];
  ssize_t k = read(s, buf, sizeof buf);
  assert_int_equal(k, 4 + 11 + 8 + 40);
  assert_memory_equal(buf + 4, "#CHALLENGE#{sha256}", 19);
  assert_int_equal(read(s, buf, sizeof buf), 0);
  close(s);
  mp_listener_free(l);
}

static void
test_garbage_response(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", &keyed));
  int s = raw_connect(mp_listener_address(l));
  /* answer the challenge with 40 bytes of junk framed correctly */
  assert_int_equal(write(s, "\0\0\0\x28" "{sha256}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                         44), 44);
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 30), MP_EAUTH);
  uint8_t buf[128];
  ssize_t k = read(s, buf, 63); /* the challenge */
  assert_int_equal(k, 63);
  k = read(s, buf, sizeof buf);
  assert_int_equal(k, 13);
  assert_memory_equal(buf, "\0\0\0\x09#FAILURE#", 13);
  close(s);
  /* an absurd frame length instead of a response */
  s = raw_connect(mp_listener_address(l));
  assert_int_equal(write(s, "\x7f\xff\xff\xff", 4), 4);
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 30), MP_EAUTH);
  close(s);
  mp_listener_free(l);
}

/* A fake listener: accept one TCP client and send it `frame` as the
 * challenge, then hold the socket until told to stop. */
struct fake {
  int lfd;
  const void *frame;
  size_t len;
  int silent;
  int hangup;
};

static void *
fake_thread(void *arg)
{
  struct fake *f = arg;
  int s = accept(f->lfd, NULL, NULL);
  if (s < 0)
    return NULL;
  if (f->hangup) {
    close(s);
    return NULL;
  }
  if (!f->silent)
    (void)!write(s, f->frame, f->len);
  char buf[64];
  while (read(s, buf, sizeof buf) > 0)
    ;
  close(s);
  return NULL;
}

static int
fake_listen(char *address, size_t cap)
{
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = { .sin_family = AF_INET };
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(l, 4), 0);
  socklen_t sl = sizeof a;
  getsockname(l, (struct sockaddr *)&a, &sl);
  snprintf(address, cap, "127.0.0.1:%d", ntohs(a.sin_port));
  return l;
}

static void
test_client_against_bad_listeners(void **state)
{
  char addr[64];
  struct {
    const char *frame;
    size_t len;
    int silent;
    int want;
  } cases[] = {
    { "\0\0\0\x05hello", 9, 0, MP_EAUTH },                /* not a challenge */
    { "\0\0\0\x0e#CHALLENGE#abc", 18, 0, MP_EAUTH },      /* too short */
    { "\0\0\0\x20#CHALLENGE#{nosuch}0123456789abc", 36, 0, MP_EAUTH },
    { "\x7f\xff\xff\xff", 4, 0, MP_EAUTH },               /* absurd length */
    { "\xff\xff\xff\xfe", 4, 0, MP_EAUTH },               /* negative */
    { "\0\0", 2, 0, MP_ETIMEDOUT },                       /* truncated */
    { "", 0, 1, MP_ETIMEDOUT },                           /* silent */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int lfd = fake_listen(addr, sizeof addr);
    struct fake f = { lfd, cases[i].frame, cases[i].len, cases[i].silent };
    pthread_t t;
    pthread_create(&t, NULL, fake_thread, &f);
    mp_conn *c;
    mp_client_opts o = ckeyed;
    o.timeout = 0.3;
    int rc = mp_client(&c, addr, &o);
    if (rc != cases[i].want)
      fail_msg("case %zu: %s (%s)", i, mp_err_name(rc), mp_errdetail());
    pthread_join(t, NULL);
    close(lfd);
  }
  /* a listener that hangs up at once */
  int lfd = fake_listen(addr, sizeof addr);
  struct fake f = { lfd, "", 0, 0, 1 };
  pthread_t t;
  pthread_create(&t, NULL, fake_thread, &f);
  mp_conn *c;
  MP_ASSERT_ERR(mp_client(&c, addr, &ckeyed), MP_EEOF);
  pthread_join(t, NULL);
  close(lfd);
}

static void
test_connect_errors(void **state)
{
  mp_conn *c;
  char addr[64];
  int lfd = fake_listen(addr, sizeof addr);
  close(lfd); /* nobody listens on that port now */
  MP_ASSERT_ERR(mp_client(&c, addr, NULL), MP_ECONNREFUSED);
  MP_ASSERT_ERR(mp_client(&c, "/nonexistent/mproc.sock", NULL), MP_ENOENT);
  MP_ASSERT_ERR(mp_client(&c, "@mproc-nobody-listens-here", NULL),
                MP_ECONNREFUSED);
  MP_ASSERT_ERR(mp_client(&c, "[::1:80", NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_client(&c, "127.0.0.1:99999", NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_client(&c, "no-such-host.invalid:80", NULL), MP_ENOTFOUND);
  MP_ASSERT_ERR(mp_client(&c, "", NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_client(NULL, "x", NULL), MP_EINVAL);
  char longpath[200];
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  MP_ASSERT_ERR(mp_client(&c, longpath, NULL), MP_EINVAL);
  mp_listener *l;
  MP_ASSERT_ERR(mp_listener_new(&l, longpath, NULL), MP_EINVAL);
  static const mp_listener_opts bad = { .authkey_len = 3 };
  MP_ASSERT_ERR(mp_listener_new(&l, NULL, &bad), MP_EINVAL);
  static const mp_listener_opts huge = { .max_pending = 100000 };
  MP_ASSERT_ERR(mp_listener_new(&l, NULL, &huge), MP_EINVAL);
  MP_ASSERT_ERR(mp_listener_new(NULL, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_listener_accept(NULL, &c, 0), MP_EINVAL);
}

static void
test_wait_on_listener(void **state)
{
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, NULL, &keyed));
  mp_waitable w[] = { MP_WAITABLE_LISTENER(l) };
  assert_int_equal(mp_wait(w, 1, 0.01), 0);
  struct client_job j = { .opts = ckeyed, .echo = 1 };
  snprintf(j.address, sizeof j.address, "%s", mp_listener_address(l));
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &j);
  assert_int_equal(mp_wait(w, 1, 30), 1);
  assert_int_equal(w[0].ready, 1);
  serve_one(l);
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  /* a handshake in progress counts: after an accept timed out waiting for
   * a client's response, wait() wakes when the response comes */
  mp_listener_free(l);
  MP_ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", &keyed));
  w[0].u.listener = l;
  int s = raw_connect(mp_listener_address(l));
  mp_conn *c;
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 0.05), MP_ETIMEDOUT);
  uint8_t buf[64];
  assert_int_equal(read(s, buf, sizeof buf), 63); /* the challenge */
  assert_int_equal(mp_wait(w, 1, 0.05), 0);
  assert_int_equal(write(s, "\0\0\0\x10" "0123456789abcdef", 20), 20);
  assert_int_equal(mp_wait(w, 1, 30), 1);
  MP_ASSERT_ERR(mp_listener_accept(l, &c, 30), MP_EAUTH);
  close(s);
  mp_listener_close(l);
  MP_ASSERT_ERR(mp_wait(w, 1, 0), MP_ECLOSED);
  mp_listener_free(l);
}

/* deliver_challenge / answer_challenge over a Pipe (what managers do). */
struct hs_job {
  mp_conn *c;
  const char *key;
  int rc;
};

static void *
deliver_thread(void *arg)
{
  struct hs_job *j = arg;
  j->rc = mp_conn_deliver_challenge(j->c, j->key, strlen(j->key), 30);
  return NULL;
}

static void
test_deliver_answer_on_pipe(void **state)
{
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  struct hs_job j = { a, "k", -1 };
  pthread_t t;
  pthread_create(&t, NULL, deliver_thread, &j);
  MP_ASSERT_OK(mp_conn_answer_challenge(b, "k", 1, 30));
  pthread_join(t, NULL);
  MP_ASSERT_OK(j.rc);
  /* the connection carries messages afterwards */
  MP_ASSERT_OK(mp_conn_send_bytes(a, "after", 5));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_conn_recv_bytes(b, &p, &n, 0, 5));
  assert_int_equal(n, 5);
  mp_free(p);
  /* wrong key: both sides fail */
  j.rc = -1;
  pthread_create(&t, NULL, deliver_thread, &j);
  MP_ASSERT_ERR(mp_conn_answer_challenge(b, "x", 1, 30), MP_EAUTH);
  pthread_join(t, NULL);
  MP_ASSERT_ERR(j.rc, MP_EAUTH);
  /* a simplex end cannot run a handshake */
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_pipe(&r, &w, 0));
  MP_ASSERT_ERR(mp_conn_answer_challenge(r, "k", 1, 0), MP_ESTATE);
  MP_ASSERT_ERR(mp_conn_answer_challenge(b, "k", 1, 0.01), MP_ETIMEDOUT);
  mp_conn_free(r);
  mp_conn_free(w);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void
hex(const char *s, uint8_t *out)
{
  for (size_t i = 0; s[2 * i]; i++)
    sscanf(s + 2 * i, "%2hhx", &out[i]);
}

/* The test vectors of docs/python-wire.md section 2. */
static void
test_hmac_vectors(void **state)
{
  uint8_t m[48], mac[MP__HMAC_MAX], want[32];
  size_t n;
  for (int i = 0; i < 20; i++)
    m[i] = (uint8_t)i;
  MP_ASSERT_OK(mp__hmac("md5", 3, "secret-key", 10, m, 20, mac, &n));
  assert_int_equal(n, 16);
  hex("de936bfac84704c988ab8ec2a6d6d714", want);
  assert_memory_equal(mac, want, 16);
  memcpy(m, "{sha256}", 8);
  for (int i = 0; i < 40; i++)
    m[8 + i] = (uint8_t)i;
  MP_ASSERT_OK(mp__hmac("sha256", 6, "secret-key", 10, m, 48, mac, &n));
  assert_int_equal(n, 32);
  hex("39c4ff3268da80f68b36eb46879c33a2dedb3ac28faebb6a0279ac6a912624d9",
      want);
  assert_memory_equal(mac, want, 32);
  MP_ASSERT_OK(mp__hmac("md5", 3, "secret-key", 10, m, 48, mac, &n));
  hex("6ae2b853ecc155b89b53c8a04f6fac88", want);
  assert_memory_equal(mac, want, 16);
  const char *names[] = { "sha384", "sha3_256", "sha3_384" };
  size_t lens[] = { 48, 32, 48 };
  for (int i = 0; i < 3; i++) {
    MP_ASSERT_OK(mp__hmac(names[i], strlen(names[i]), "", 0, m, 48, mac, &n));
    assert_int_equal(n, lens[i]);
  }
  MP_ASSERT_ERR(mp__hmac("sha1", 4, "k", 1, m, 48, mac, &n), MP_ENOTSUP);
  assert_true(mp__ct_equal("abc", "abc", 3));
  assert_false(mp__ct_equal("abc", "abd", 3));
  uint8_t r1[40], r2[40];
  MP_ASSERT_OK(mp__random_bytes(r1, 40));
  MP_ASSERT_OK(mp__random_bytes(r2, 40));
  assert_memory_not_equal(r1, r2, 40);
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_hmac_vectors),
  cmocka_unit_test(test_default_address),
  cmocka_unit_test(test_tcp),
  cmocka_unit_test(test_ipv6),
  cmocka_unit_test(test_path_and_abstract),
  cmocka_unit_test(test_bad_port_is_not_a_path),
  cmocka_unit_test(test_no_key),
  cmocka_unit_test(test_empty_key_is_a_key),
  cmocka_unit_test(test_wrong_key_then_serve_others),
  cmocka_unit_test(test_flood_of_silent_clients),
  cmocka_unit_test(test_handshake_timeout_drops_silent_client),
  cmocka_unit_test(test_garbage_response),
  cmocka_unit_test(test_client_against_bad_listeners),
  cmocka_unit_test(test_connect_errors),
  cmocka_unit_test(test_wait_on_listener),
  cmocka_unit_test(test_deliver_answer_on_pipe),
};

MP_TEST_MAIN(tests)
