/* SPDX-License-Identifier: MIT */
/* A C peer for the interop tests (tests/conn/test_interop.py).
 *
 *   helper_conn serve ADDRESS KEY NCONN      listener; echoes bytes
 *   helper_conn serve-obj ADDRESS KEY NCONN  listener; echoes values
 *   helper_conn client ADDRESS KEY STEP...   client; runs the steps
 *
 * KEY "-" means no key, "=" the empty key.  Environment: REFUSE_MD5=1 sets
 * refuse_legacy_md5.  Every result is printed as one line on stdout:
 *   ADDRESS <addr> | ACCEPTED <peer> | ACCEPT <MP_E...> | CONNECT <MP_E...>
 *   | OK <step> | FAIL <step> <why> | RECV <repr> | INTO <count> <ints...>
 * Steps:
 *   frames        0, 1, 16384, 16385-byte messages and an escaped 5-byte
 *                 frame through an echo peer (the echo has a plain header)
 *   big:N         N bytes there and back
 *   send:TEXT     send_bytes(TEXT)
 *   recv          recv_bytes, printed as RECV <hex>
 *   into          recv_bytes_into a 5-int buffer, printed as INTO
 *   ints          send_bytes of the C ints [42, 1729]
 *   sendobj:EXPR  not an expression: one of a fixed set (see objs below)
 *   recvobj       recv(), printed as RECV <repr>
 *   echoobj:NAME  send the named value, expect it back equal */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

static void
line(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static void
key_of(const char *k, const void **key, size_t *len)
{
  if (!strcmp(k, "-")) {
    *key = NULL;
    *len = 0;
  } else if (!strcmp(k, "=")) {
    *key = "";
    *len = 0;
  } else {
    *key = k;
    *len = strlen(k);
  }
}

static int
serve(const char *address, const char *k, int nconn, int objects)
{
  mp_listener_opts o = { .max_recv = UINT64_MAX,
                         .refuse_legacy_md5 = getenv("REFUSE_MD5") != NULL };
  key_of(k, &o.authkey, &o.authkey_len);
  mp_listener *l;
  int rc = mp_listener_new(&l, strcmp(address, "-") ? address : NULL, &o);
  if (rc) {
    line("LISTEN %s %s", mp_err_name(rc), mp_errdetail());
    return 1;
  }
  line("ADDRESS %s", mp_listener_address(l));
  for (int i = 0; i < nconn; i++) {
    mp_conn *c;
    rc = mp_listener_accept(l, &c, 60);
    if (rc) {
      line("ACCEPT %s %s", mp_err_name(rc), mp_errdetail());
      continue;
    }
    line("ACCEPTED %s", mp_listener_last_accepted(l));
    for (;;) {
      if (objects) {
        mp_obj *v;
        rc = mp_conn_recv(c, &v, MP_FOREVER);
        if (rc == MP_EEOF)
          break;
        if (rc) {
          /* a value we cannot decode: say so, keep serving */
          mp_obj *err = mp_str_printf("ERROR %s", mp_err_name(rc));
          rc = mp_conn_send(c, err);
          mp_obj_free(err);
          if (rc)
            break;
          continue;
        }
        rc = mp_conn_send(c, v);
        mp_obj_free(v);
      } else {
        void *p;
        size_t n;
        rc = mp_conn_recv_bytes(c, &p, &n, 0, MP_FOREVER);
        if (rc == MP_EEOF)
          break;
        if (rc) {
          line("RECVFAIL %s %s", mp_err_name(rc), mp_errdetail());
          break;
        }
        rc = mp_conn_send_bytes(c, p, n);
        mp_free(p);
      }
      if (rc) {
        line("SENDFAIL %s", mp_err_name(rc));
        break;
      }
    }
    mp_conn_free(c);
  }
  mp_listener_free(l);
  return 0;
}

static void
hexline(const char *tag, const void *p, size_t n)
{
  char *s = malloc(2 * n + 1);
  for (size_t i = 0; i < n; i++)
    sprintf(s + 2 * i, "%02x", ((const unsigned char *)p)[i]);
  s[2 * n] = '\0';
  line("%s %s", tag, s);
  free(s);
}

static int
echo_bytes(mp_conn *c, const void *buf, size_t n)
{
  int rc = mp_conn_send_bytes(c, buf, n);
  if (rc)
    return rc;
  void *p;
  size_t m;
  rc = mp_conn_recv_bytes(c, &p, &m, 0, 120);
  if (rc)
    return rc;
  rc = (m == n && (n == 0 || !memcmp(p, buf, n))) ? 0 : MP_EMALFORMED;
  mp_free(p);
  return rc;
}

static int
step_frames(mp_conn *c)
{
  size_t sizes[] = { 0, 1, 16384, 16385 };
  char *buf = malloc(16385);
  for (size_t i = 0; i < 16385; i++)
    buf[i] = (char)(i % 251);
  for (size_t i = 0; i < 4; i++) {
    int rc = echo_bytes(c, buf, sizes[i]);
    if (rc) {
      free(buf);
      return rc;
    }
  }
  free(buf);
  /* an escaped header for a 5-byte payload, written by hand */
  int fd = mp_conn_fileno(c);
  if (write(fd, "\xff\xff\xff\xff\0\0\0\0\0\0\0\5abcde", 17) != 17)
    return MP_EPIPE;
  unsigned char got[9];
  size_t have = 0;
  while (have < 9) {
    ssize_t k = read(fd, got + have, 9 - have);
    if (k <= 0)
      return MP_EEOF;
    have += (size_t)k;
  }
  return memcmp(got, "\0\0\0\5abcde", 9) ? MP_EMALFORMED : 0;
}

/* Values the Python side knows by name (test_interop.py has the twins). */
static mp_obj *
named(const char *name)
{
  if (!strcmp(name, "ping"))
    return mp_str_new("ping");
  if (!strcmp(name, "mixed"))
    return MP_LIST(mp_int_new(1), mp_str_new("two"), mp_float_new(3.0),
                   mp_none(), mp_bool_new(1), mp_bytes_new("\0\xff", 2),
                   MP_TUPLE(mp_int_new(-1), mp_int_new(INT64_MIN)),
                   MP_DICT(mp_str_new("a"), MP_TUPLE(mp_int_new(1))),
                   mp_bytearray_new("ab", 2), MP_SET(mp_int_new(7)));
  if (!strcmp(name, "seed"))
    return MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
                   mp_global_new("builtins", "float"));
  return NULL;
}

static int
client(const char *address, const char *k, int nsteps, char **steps)
{
  mp_client_opts o = { .timeout = 60, .max_recv = UINT64_MAX,
                       .refuse_legacy_md5 = getenv("REFUSE_MD5") != NULL };
  key_of(k, &o.authkey, &o.authkey_len);
  mp_conn *c;
  int rc = mp_client(&c, address, &o);
  if (rc) {
    line("CONNECT %s %s", mp_err_name(rc), mp_errdetail());
    return 3;
  }
  int failed = 0;
  for (int i = 0; i < nsteps; i++) {
    const char *s = steps[i];
    rc = 0;
    if (!strcmp(s, "frames")) {
      rc = step_frames(c);
    } else if (!strncmp(s, "big:", 4)) {
      size_t n = strtoull(s + 4, NULL, 10);
      unsigned char *buf = malloc(n ? n : 1);
      for (size_t j = 0; j < n; j++)
        buf[j] = (unsigned char)(j * 31 + (j >> 16));
      rc = echo_bytes(c, buf, n);
      free(buf);
    } else if (!strncmp(s, "send:", 5)) {
      rc = mp_conn_send_bytes(c, s + 5, strlen(s + 5));
    } else if (!strcmp(s, "recv")) {
      void *p;
      size_t n;
      rc = mp_conn_recv_bytes(c, &p, &n, 0, 60);
      if (!rc) {
        hexline("RECV", p, n);
        mp_free(p);
      }
    } else if (!strcmp(s, "into")) {
      int arr[5] = { 0 };
      size_t n;
      rc = mp_conn_recv_bytes_into(c, arr, sizeof arr, 0, &n, 60);
      if (!rc)
        line("INTO %zu %d %d %d %d %d", n, arr[0], arr[1], arr[2], arr[3],
             arr[4]);
      else if (rc == MP_ETOOSHORT)
        line("INTO short %zu", n);
    } else if (!strcmp(s, "ints")) {
      int arr[2] = { 42, 1729 };
      rc = mp_conn_send_bytes(c, arr, sizeof arr);
    } else if (!strncmp(s, "sendobj:", 8)) {
      mp_obj *v = named(s + 8);
      rc = v ? mp_conn_send(c, v) : MP_EINVAL;
      mp_obj_free(v);
    } else if (!strcmp(s, "recvobj")) {
      mp_obj *v;
      rc = mp_conn_recv(c, &v, 60);
      if (!rc) {
        char *r = mp_obj_repr(v);
        line("RECV %s", r ? r : "(no repr)");
        mp_free(r);
        mp_obj_free(v);
      }
    } else if (!strncmp(s, "echoobj:", 8)) {
      mp_obj *v = named(s + 8), *back = NULL;
      rc = v ? mp_conn_send(c, v) : MP_EINVAL;
      if (!rc)
        rc = mp_conn_recv(c, &back, 60);
      if (!rc && !mp_obj_equal(v, back))
        rc = MP_EMALFORMED;
      mp_obj_free(v);
      mp_obj_free(back);
    } else {
      rc = MP_EINVAL;
    }
    if (rc) {
      line("FAIL %s %s %s", s, mp_err_name(rc), mp_errdetail());
      failed = 1;
      break;
    }
    line("OK %s", s);
  }
  mp_conn_free(c);
  return failed;
}

int
main(int argc, char **argv)
{
  if (argc >= 5 && !strcmp(argv[1], "serve"))
    return serve(argv[2], argv[3], atoi(argv[4]), 0);
  if (argc >= 5 && !strcmp(argv[1], "serve-obj"))
    return serve(argv[2], argv[3], atoi(argv[4]), 1);
  if (argc >= 4 && !strcmp(argv[1], "client"))
    return client(argv[2], argv[3], argc - 4, argv + 4);
  fprintf(stderr, "usage: see the comment at the top of helper_conn.c\n");
  return 2;
}
