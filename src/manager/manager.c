/* SPDX-License-Identifier: MIT */
/* The manager object: BaseManager/SyncManager's start, connect,
 * get_server().serve_forever(), shutdown and lifetime (Python's "Cleanup":
 * a started server is shut down when its manager is freed or the program
 * exits, and, a daemon child, dies with its parent). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hmac.h"
#include "manager/manager_internal.h"
#include "platform/platform.h"

enum { ST_NEW, ST_STARTED, ST_CONNECTED, ST_SERVING, ST_DONE };

struct mp_manager {
  pthread_mutex_t mu;
  int state;
  uint32_t owner_pid;
  char *address;
  uint8_t *key;
  size_t keylen;
  mp_context *ctx;
  mp_target_fn initializer;
  mp_obj *initargs;
  mp__mgr_limits lim;
  const mp_manager_type **types;
  size_t ntypes;
  char **shared; /* pairs typeid, base */
  size_t nshared;
  mp_process *proc;
  mp_conn *stop; /* the started server's stop channel (our end) */
  mp__mgr_server *serving;
  mp__finalizer *fin;
};

MP_EXTERN int
mp_manager_new(mp_manager **out, const mp_manager_opts *opts)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "mp_manager_new: NULL out");
  mp_manager_opts o = opts ? *opts : (mp_manager_opts){ 0 };
  if (o.initargs && mp_obj_type(o.initargs) != MP_T_TUPLE)
    return mp_seterr(MP_ETYPE, "initargs must be a tuple");
  mp_manager *m = calloc(1, sizeof *m);
  if (!m)
    return MP_ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  m->owner_pid = mp__getpid();
  const uint8_t *k = o.authkey;
  size_t kl = o.authkey_len;
  if (!k)
    mp_process_authkey(mp_current_process(), &k, &kl);
  m->key = malloc(kl ? kl : 1);
  m->address = o.address && *o.address ? strdup(o.address) : NULL;
  if (!m->key || (o.address && *o.address && !m->address)) {
    mp_manager_free(m);
    return MP_ENOMEM;
  }
  memcpy(m->key, k, kl);
  m->keylen = kl;
  m->ctx = o.ctx;
  m->initializer = o.initializer;
  m->initargs = mp_obj_ref(o.initargs);
  m->lim.max_objects = o.max_objects;
  m->lim.max_connections = o.max_connections;
  m->lim.max_request = o.max_request;
  *out = m;
  return 0;
}

MP_EXTERN int
mp_manager_register(mp_manager *m, const mp_manager_type *type)
{
  mp__errdetail_clear();
  if (!m || !type || !type->typeid || !*type->typeid)
    return mp_seterr(MP_EINVAL, "mp_manager_register: NULL or nameless type");
  mp__buf b = { 0 };
  int rc = mp__funcref_encode(type, 0, &b);
  mp__buf_release(&b);
  if (rc)
    return mp_seterr(MP_EINVAL, "type '%s' is not in static storage",
                     type->typeid);
  pthread_mutex_lock(&m->mu);
  if (m->state != ST_NEW) {
    pthread_mutex_unlock(&m->mu);
    return mp_seterr(MP_ESTATE, "register before the server starts");
  }
  const mp_manager_type **nt =
      realloc(m->types, (m->ntypes + 1) * sizeof *nt);
  if (nt) {
    m->types = nt;
    nt[m->ntypes++] = type;
  }
  pthread_mutex_unlock(&m->mu);
  return nt ? 0 : MP_ENOMEM;
}

MP_EXTERN int
mp_manager_register_shared(mp_manager *m, const char *typeid,
                           const char *base)
{
  mp__errdetail_clear();
  if (!m || !typeid || !*typeid || !base)
    return mp_seterr(MP_EINVAL, "mp_manager_register_shared: NULL argument");
  size_t i = 0;
  while (mp__mgr_builtin_types[i] &&
         strcmp(mp__mgr_builtin_types[i]->typeid, base))
    i++;
  if (!mp__mgr_builtin_types[i])
    return mp_seterr(MP_ENOTFOUND, "no built-in typeid '%s'", base);
  pthread_mutex_lock(&m->mu);
  int rc = 0;
  char **ns = NULL;
  if (m->state != ST_NEW)
    rc = mp_seterr(MP_ESTATE, "register before the server starts");
  else if (!(ns = realloc(m->shared, (m->nshared + 1) * 2 * sizeof *ns)))
    rc = MP_ENOMEM;
  if (!rc) {
    m->shared = ns;
    ns[m->nshared * 2] = strdup(typeid);
    ns[m->nshared * 2 + 1] = strdup(base);
    m->nshared++;
    if (!ns[m->nshared * 2 - 2] || !ns[m->nshared * 2 - 1])
      rc = MP_ENOMEM;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

MP_EXTERN const char *
mp_manager_address(const mp_manager *m)
{
  return m ? m->address : NULL;
}

/* ---- the default address ------------------------------------------------------ */

/* A started server's default address is a socket in one directory per
 * process, made on first use and removed at exit (as CPython's
 * util.get_temp_dir()), not a directory per server: mkdir and rmdir on the
 * temporary file system were a fifth of a start's and shutdown's time. */
static pthread_mutex_t tmp_mu = PTHREAD_MUTEX_INITIALIZER;
static char tmp_dir[200];
static uint32_t tmp_pid;

static void
tmp_dir_remove(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&tmp_mu);
  if (tmp_pid == mp__getpid() && tmp_dir[0])
    rmdir(tmp_dir); /* fails, and stays, if a killed server left its socket */
  tmp_dir[0] = 0;
  tmp_pid = 0;
  pthread_mutex_unlock(&tmp_mu);
}

static int
default_address(char **out)
{
  pthread_mutex_lock(&tmp_mu);
  int rc = 0;
  if (tmp_pid != mp__getpid() || !tmp_dir[0]) { /* a fork child makes its own */
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
      base = "/tmp";
    int made = 0;
    if ((size_t)snprintf(tmp_dir, sizeof tmp_dir, "%s/mproc-mgr-XXXXXX",
                         base) >= sizeof tmp_dir)
      rc = mp_seterr(MP_EINVAL, "TMPDIR too long");
    else if (!(made = mkdtemp(tmp_dir) != NULL))
      rc = mp_seterr(mp__errno(), "mkdtemp in %s failed", base);
    else if (!mp__finalizer_add(MP__FINALIZE_CHILDREN - 1, tmp_dir_remove,
                                NULL))
      rc = MP_ENOMEM;
    if (rc) {
      if (made)
        rmdir(tmp_dir);
      tmp_dir[0] = 0;
    } else {
      tmp_pid = mp__getpid();
      mp_log_info("created temp directory %s", tmp_dir);
    }
  }
  uint8_t rnd[8] = { 0 };
  char path[256];
  if (!rc) {
    mp__random_bytes(rnd, sizeof rnd);
    snprintf(path, sizeof path,
             "%s/listener-%02x%02x%02x%02x%02x%02x%02x%02x", tmp_dir, rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    if (!(*out = strdup(path)))
      rc = MP_ENOMEM;
  }
  pthread_mutex_unlock(&tmp_mu);
  return rc;
}

/* ---- the server process ----------------------------------------------------- */

static int
server_main(mp_obj *args)
{
  mp_conn *w;
  mp_obj *addr, *key, *types, *shared, *init, *initargs;
  int64_t maxobj, maxconn, maxreq;
  if (mp_args_parse(args, "{Connection}OOOOOOLLL", &w, &addr, &key, &types,
                    &shared, &init, &initargs, &maxobj, &maxconn, &maxreq))
    return 1;
  const char *method = mp_context_method(mp_process_context(mp_current_process()));
  if (method && strcmp(method, "threading"))
    signal(SIGINT, SIG_IGN); /* as Python's manager process */
  int rc = 0;
  char err[256] = "";
  mp_obj *const *ti, *const *si;
  size_t nt = 0, ns = 0;
  mp_seq_items(types, &ti, &nt);
  mp_seq_items(shared, &si, &ns);
  const mp_manager_type **tv = calloc(nt ? nt : 1, sizeof *tv);
  char **sv = calloc(ns ? ns : 1, sizeof *sv);
  if (!tv || !sv)
    rc = MP_ENOMEM;
  for (size_t i = 0; !rc && i < nt; i++) {
    const void *data;
    size_t len;
    void *addrp;
    mp_bytes_get(ti[i], &data, &len);
    const uint8_t *p = data;
    rc = mp__funcref_decode(&p, p + len, &addrp, err, sizeof err);
    if (!rc)
      tv[i] = addrp;
    else
      mp_seterr(rc, "registered type %zu: %s", i, err);
  }
  for (size_t i = 0; !rc && i < ns; i++) {
    size_t len;
    mp_str_get(si[i], (const char **)&sv[i], &len);
  }
  if (!rc && mp_func_get(init)) {
    int (*fn)(mp_obj *) = (int (*)(mp_obj *))mp_func_get(init);
    int r = fn(initargs);
    if (r)
      rc = mp_seterr(MP_ESTATE, "the initializer returned %d", r);
  }
  mp__mgr_server *s = NULL;
  const void *kd;
  size_t kl;
  mp_bytes_get(key, &kd, &kl);
  const char *a = NULL;
  size_t al;
  if (mp_obj_type(addr) != MP_T_NONE)
    mp_str_get(addr, &a, &al);
  mp__mgr_limits lim = { (size_t)maxobj, (int)maxconn, (uint64_t)maxreq };
  if (!rc)
    rc = mp__mgr_server_new(&s, a, kd, kl, tv, nt, sv, ns / 2, &lim);
  mp_obj *msg = rc ? MP_TUPLE(mp_str_new("error"), mp_int_new(rc),
                              mp__mgr_fmt("%s", mp_errdetail()))
                   : MP_TUPLE(mp_str_new("ok"),
                              mp_str_new(mp__mgr_server_address(s)));
  free(tv);
  free(sv);
  if (!rc)
    mp__mgr_server_log_serving(s);
  int sent = msg ? mp_conn_send(w, msg) : MP_ENOMEM;
  mp_obj_free(msg);
  if (rc || sent) {
    mp__mgr_server_free(s);
    return 1;
  }
  /* the parent stops us with a message on this connection; and, as the
   * server is not a daemon (so it may start children: a Pool), it stops
   * when its parent dies (the parent's sentinel) */
  mp__mgr_server_watch_fd(s, mp_conn_fileno(w));
  mp_process *parent = mp_parent_process();
  int psent = method && strcmp(method, "threading") && parent
                  ? mp_process_sentinel(parent)
                  : -1;
  if (psent >= 0)
    mp__mgr_server_watch_fd(s, psent);
  mp__mgr_server_serve(s);
  mp__mgr_server_free(s);
  return 0;
}

static void manager_finalize(void *arg);

MP_EXTERN int
mp_manager_start(mp_manager *m)
{
  mp__errdetail_clear();
  if (!m)
    return mp_seterr(MP_EINVAL, "mp_manager_start: NULL manager");
  pthread_mutex_lock(&m->mu);
  if (m->state != ST_NEW) {
    pthread_mutex_unlock(&m->mu);
    return mp_seterr(MP_ESTATE, "the manager was already started or "
                                "connected");
  }
  m->state = ST_STARTED; /* claims it; reset on failure */
  pthread_mutex_unlock(&m->mu);
  mp_conn *r = NULL, *w = NULL;
  /* duplex: the server's "ok" comes back on it, and it stays open as the
   * stop channel (mp_manager_shutdown sends on it) */
  int rc = mp_pipe(&r, &w, 1);
  mp_obj *types = NULL, *shared = NULL, *args = NULL;
  char *addr = NULL;
  if (!rc && !m->address)
    rc = default_address(&addr);
  if (!rc) {
    types = mp_list_new();
    shared = mp_list_new();
    for (size_t i = 0; types && i < m->ntypes; i++) {
      mp__buf b = { 0 };
      if (mp__funcref_encode(m->types[i], 0, &b) ||
          mp_list_append_take(types, mp_bytes_new(b.data, b.len))) {
        mp_obj_free(types);
        types = NULL;
      }
      mp__buf_release(&b);
    }
    for (size_t i = 0; shared && i < m->nshared * 2; i++)
      if (mp_list_append_take(shared, mp_str_new(m->shared[i]))) {
        mp_obj_free(shared);
        shared = NULL;
      }
    args = MP_TUPLE(mp_conn_obj(w),
                    mp_str_new(m->address ? m->address : addr),
                    mp_bytes_new(m->key, m->keylen), types, shared,
                    m->initializer ? MP_FUNC(m->initializer) : mp_none(),
                    m->initargs ? mp_obj_ref(m->initargs) : mp_tuple_take(0),
                    mp_int_new((int64_t)m->lim.max_objects),
                    mp_int_new(m->lim.max_connections),
                    mp_int_new((int64_t)m->lim.max_request));
    rc = args ? 0 : MP_ENOMEM;
  }
  free(addr);
  mp_conn_free(w);
  mp_process *p = NULL;
  if (!rc)
    rc = mp_process_new(&p, m->ctx,
                        &(mp_process_opts){ .target = server_main,
                                            .args = args,
                                            .name = "SyncManager-1",
                                            .daemon = MP_DAEMON_NO,
                                            .authkey = m->key,
                                            .authkey_len = m->keylen });
  mp_obj_free(args);
  if (!rc)
    rc = mp_process_start(p);
  mp_obj *msg = NULL;
  if (!rc) {
    rc = mp_conn_recv(r, &msg, 60.0);
    if (rc == MP_EEOF)
      rc = mp_seterr(MP_ESTATE, "the manager server process ended before it "
                                "listened");
  }
  const char *kind = "", *text = "";
  size_t len;
  if (!rc && (mp_str_get(mp_seq_item(msg, 0), &kind, &len) ||
              strcmp(kind, "ok"))) {
    int64_t code = MP_ESTATE;
    mp_int_get(mp_seq_item(msg, 1), &code);
    mp_str_get(mp_seq_item(msg, 2), &text, &len);
    rc = mp_seterr((int)code, "manager server: %s", text);
  }
  if (!rc) {
    const char *a;
    mp_str_get(mp_seq_item(msg, 1), &a, &len);
    char *na = strdup(a);
    if (!na) {
      rc = MP_ENOMEM;
    } else {
      free(m->address);
      m->address = na;
    }
  }
  mp_obj_free(msg);
  if (rc) {
    mp_conn_free(r);
    if (p) {
      if (mp_process_is_alive(p) == 1)
        mp_process_kill(p);
      mp_process_join(p, 5.0);
      mp_process_free(p);
    }
    pthread_mutex_lock(&m->mu);
    m->state = ST_NEW;
    pthread_mutex_unlock(&m->mu);
    return rc;
  }
  pthread_mutex_lock(&m->mu);
  m->proc = p;
  m->stop = r;
  m->fin = mp__finalizer_add(MP__FINALIZE_MANAGER, manager_finalize, m);
  pthread_mutex_unlock(&m->mu);
  return 0;
}

MP_EXTERN int
mp_manager_connect(mp_manager *m)
{
  mp__errdetail_clear();
  if (!m || !m->address)
    return mp_seterr(MP_EINVAL, "mp_manager_connect: no address");
  int rc = mp__mgr_call_server(m->address, m->key, m->keylen, "dummy", NULL,
                               NULL, NULL);
  if (rc)
    return rc;
  pthread_mutex_lock(&m->mu);
  if (m->state == ST_NEW)
    m->state = ST_CONNECTED;
  pthread_mutex_unlock(&m->mu);
  return 0;
}

MP_EXTERN int
mp_manager_serve_forever(mp_manager *m, void (*ready)(mp_manager *, void *),
                         void *arg)
{
  mp__errdetail_clear();
  if (!m)
    return mp_seterr(MP_EINVAL, "mp_manager_serve_forever: NULL manager");
  pthread_mutex_lock(&m->mu);
  if (m->state != ST_NEW) {
    pthread_mutex_unlock(&m->mu);
    return mp_seterr(MP_ESTATE, "the manager was already started");
  }
  m->state = ST_SERVING;
  pthread_mutex_unlock(&m->mu);
  mp__mgr_server *s = NULL;
  char **sv = m->shared;
  int rc = mp__mgr_server_new(&s, m->address, m->key, m->keylen, m->types,
                              m->ntypes, sv, m->nshared, &m->lim);
  if (!rc) {
    char *na = strdup(mp__mgr_server_address(s));
    pthread_mutex_lock(&m->mu);
    if (na) {
      free(m->address);
      m->address = na;
    }
    m->serving = s;
    pthread_mutex_unlock(&m->mu);
    mp__mgr_server_log_serving(s);
    if (ready)
      ready(m, arg);
    mp__mgr_server_serve(s);
    pthread_mutex_lock(&m->mu);
    m->serving = NULL;
    pthread_mutex_unlock(&m->mu);
    mp__mgr_server_free(s);
  }
  pthread_mutex_lock(&m->mu);
  m->state = rc ? ST_NEW : ST_DONE;
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static int
stop_started(mp_manager *m)
{
  mp_process *p = m->proc;
  m->proc = NULL;
  mp_conn *stop = m->stop;
  m->stop = NULL;
  if (!p) {
    mp_conn_free(stop);
    return mp_seterr(MP_ESTATE, "no server to stop");
  }
  /* A message on the stop channel ends the serve loop: no connection,
   * handshake or server thread as a shutdown call needs.  It fails only
   * if the server has already gone (a client's shutdown). */
  /* the INFO lines are CPython's BaseManager._finalize_manager's */
  if (stop) {
    if (mp_process_is_alive(p) == 1)
      mp_log_info("sending shutdown message to manager");
    mp_conn_send_bytes(stop, "stop", 4);
  }
  mp_conn_free(stop);
  const char *method = mp_context_method(mp_process_context(p));
  int threading = method && !strcmp(method, "threading");
  if (mp_process_join(p, threading ? 30.0 : 1.0) == MP_ETIMEDOUT &&
      !threading) {
    mp_log_info("manager still alive");
    mp_log_info("trying to `terminate()` manager process");
    mp_process_terminate(p);
    if (mp_process_join(p, 1.0) == MP_ETIMEDOUT) {
      mp_log_info("manager still alive after terminate");
      mp_process_kill(p);
      mp_process_join(p, MP_FOREVER);
    }
  }
  mp_process_free(p);
  return 0;
}

static void
manager_finalize(void *arg)
{
  mp_manager *m = arg;
  pthread_mutex_lock(&m->mu);
  m->fin = NULL;
  if (m->state == ST_STARTED) {
    stop_started(m);
    m->state = ST_DONE;
  }
  pthread_mutex_unlock(&m->mu);
}

MP_EXTERN int
mp_manager_shutdown(mp_manager *m)
{
  mp__errdetail_clear();
  if (!m)
    return mp_seterr(MP_EINVAL, "mp_manager_shutdown: NULL manager");
  pthread_mutex_lock(&m->mu);
  int rc = 0;
  if (m->state == ST_SERVING && m->serving) {
    mp__mgr_server_stop(m->serving);
  } else if (m->state == ST_STARTED && m->owner_pid == mp__getpid()) {
    mp__finalizer *f = m->fin;
    m->fin = NULL;
    rc = stop_started(m);
    m->state = ST_DONE;
    pthread_mutex_unlock(&m->mu);
    if (f)
      mp__finalizer_cancel(f);
    return rc;
  } else if (m->state == ST_CONNECTED) {
    rc = mp__mgr_call_server(m->address, m->key, m->keylen, "shutdown", NULL,
                             NULL, NULL);
    m->state = ST_DONE;
  } else {
    rc = mp_seterr(MP_ESTATE, "no server to stop");
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

MP_EXTERN void
mp_manager_free(mp_manager *m)
{
  if (!m)
    return;
  if (m->owner_pid == mp__getpid()) {
    pthread_mutex_lock(&m->mu);
    int started = m->state == ST_STARTED;
    pthread_mutex_unlock(&m->mu);
    if (started)
      mp_manager_shutdown(m);
  } else if (m->proc) {
    mp_process_free(m->proc); /* a fork child's copy: not its server */
    mp_conn_free(m->stop);
  }
  for (size_t i = 0; i < m->nshared * 2; i++)
    free(m->shared[i]);
  free(m->shared);
  free(m->types);
  mp_obj_free(m->initargs);
  if (m->key)
    memset(m->key, 0, m->keylen);
  free(m->key);
  free(m->address);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* ---- creating objects and server methods --------------------------------------- */

MP_EXTERN int
mp_manager_create(mp_manager *m, const char *typeid, mp_obj *args,
                  mp_obj *kwds, mp_proxy **out)
{
  mp__errdetail_clear();
  if (!m || !typeid || !out)
    return mp_seterr(MP_EINVAL, "mp_manager_create: NULL argument");
  if (!m->address)
    return mp_seterr(MP_ESTATE, "the manager is neither started nor "
                                "connected");
  if (args && mp_obj_type(args) != MP_T_TUPLE)
    return mp_seterr(MP_ETYPE, "args must be a tuple");
  mp_obj *const *items = NULL;
  size_t n = 0;
  if (args)
    mp_seq_items(args, &items, &n);
  mp_obj *full = mp_tuple_take(0);
  mp_obj *l = mp_list_new();
  int rc = l && full && !mp_list_append_take(l, mp_str_new(typeid)) ? 0
                                                                     : MP_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++)
    rc = mp_list_append(l, items[i]);
  if (!rc) {
    mp_obj *const *li;
    size_t ln;
    mp_seq_items(l, &li, &ln);
    mp_obj_free(full);
    full = mp_tuple_from(ln, li);
    rc = full ? 0 : MP_ENOMEM;
  }
  mp_obj_free(l);
  mp_obj *v = NULL;
  if (!rc)
    rc = mp__mgr_call_server(m->address, m->key, m->keylen, "create", full,
                             kwds, &v);
  mp_obj_free(full);
  if (rc)
    return rc;
  const char *ident;
  size_t len;
  mp_obj *exposed = mp_seq_item(v, 1);
  if (mp_obj_type(v) != MP_T_TUPLE || mp_str_get(mp_seq_item(v, 0), &ident,
                                                 &len) ||
      (mp_obj_type(exposed) != MP_T_TUPLE && mp_obj_type(exposed) != MP_T_LIST)) {
    mp_obj_free(v);
    return mp_seterr(MP_EMALFORMED, "create replied with no (ident, exposed)");
  }
  mp_obj *ex = NULL;
  if (mp_obj_type(exposed) == MP_T_LIST) {
    mp_obj *const *ei;
    size_t en;
    mp_seq_items(exposed, &ei, &en);
    ex = mp_tuple_from(en, ei);
  } else {
    ex = mp_obj_ref(exposed);
  }
  rc = mp__mgr_proxy_new(out, m->address, m->key, m->keylen, typeid, ident,
                         ex, 0);
  mp_obj_free(ex);
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_manager_number_of_objects(mp_manager *m, int64_t *out)
{
  mp__errdetail_clear();
  if (!m || !out || !m->address)
    return mp_seterr(MP_EINVAL, "mp_manager_number_of_objects: no server");
  mp_obj *v = NULL;
  int rc = mp__mgr_call_server(m->address, m->key, m->keylen,
                               "number_of_objects", NULL, NULL, &v);
  if (!rc && mp_int_get(v, out))
    rc = mp_seterr(MP_EMALFORMED, "number_of_objects replied a non-int");
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_manager_debug_info(mp_manager *m, char **out)
{
  mp__errdetail_clear();
  if (!m || !out || !m->address)
    return mp_seterr(MP_EINVAL, "mp_manager_debug_info: no server");
  mp_obj *v = NULL;
  *out = NULL;
  int rc = mp__mgr_call_server(m->address, m->key, m->keylen, "debug_info",
                               NULL, NULL, &v);
  if (!rc)
    *out = mp_obj_str(v);
  mp_obj_free(v);
  return rc ? rc : *out ? 0 : MP_ENOMEM;
}

static int
create_args(mp_manager *m, const char *typeid, mp_obj *args, mp_proxy **out)
{
  if (!args)
    return MP_ENOMEM;
  int rc = mp_manager_create(m, typeid, args, NULL, out);
  mp_obj_free(args);
  return rc;
}

MP_EXTERN int
mp_manager_dict(mp_manager *m, mp_proxy **out)
{
  return mp_manager_create(m, "dict", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_list(mp_manager *m, mp_obj *init, mp_proxy **out)
{
  return init ? create_args(m, "list", MP_TUPLE(mp_obj_ref(init)), out)
              : mp_manager_create(m, "list", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_namespace(mp_manager *m, mp_proxy **out)
{
  return mp_manager_create(m, "Namespace", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_value(mp_manager *m, const char *typecode, mp_obj *value,
                 mp_proxy **out)
{
  return create_args(m, "Value",
                     MP_TUPLE(mp_str_new(typecode ? typecode : "O"),
                              value ? mp_obj_ref(value) : mp_none()),
                     out);
}

MP_EXTERN int
mp_manager_queue(mp_manager *m, int maxsize, mp_proxy **out)
{
  return create_args(m, "Queue", MP_TUPLE(mp_int_new(maxsize)), out);
}

MP_EXTERN int
mp_manager_pool(mp_manager *m, int processes, mp_proxy **out)
{
  if (processes < 0)
    return mp_seterr(MP_EINVAL, "processes must be 0 (the CPUs) or more");
  return processes ? create_args(m, "Pool", MP_TUPLE(mp_int_new(processes)),
                                 out)
                   : mp_manager_create(m, "Pool", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_lock(mp_manager *m, mp_proxy **out)
{
  return mp_manager_create(m, "Lock", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_rlock(mp_manager *m, mp_proxy **out)
{
  return mp_manager_create(m, "RLock", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_event(mp_manager *m, mp_proxy **out)
{
  return mp_manager_create(m, "Event", NULL, NULL, out);
}

MP_EXTERN int
mp_manager_semaphore(mp_manager *m, int value, mp_proxy **out)
{
  return create_args(m, "Semaphore", MP_TUPLE(mp_int_new(value)), out);
}
