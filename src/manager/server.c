/* SPDX-License-Identifier: MIT */
/* The manager server (docs/python-wire.md section 4): objects by ident with
 * reference counts, the server methods, and one thread per connection
 * running CPython's serve loop.
 *
 * Locking: `mu` guards the object table, the connection list and the
 * counters.  A call pins its entry (pins counts the table's own hold plus
 * the calls in flight) so the object outlives a decref that races with
 * it; objects are destroyed with no server lock held, since destroying a
 * container may release local proxies, which decref other entries.  Calls
 * on a type without MP_MANAGER_CONCURRENT hold the entry's call_mu. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/conn_internal.h"
#include "manager/manager_internal.h"
#include "obj/obj_internal.h"

typedef struct mgr_typeinfo {
  char *typeid;
  const mp_manager_type *type;
  void *shared; /* the one object of a shared typeid, or NULL */
  mp_obj *exposed;
} mgr_typeinfo;

typedef struct mgr_entry {
  uint64_t id;
  char ident[20];
  mgr_typeinfo *ti;
  void *obj;
  int64_t refcount; /* the protocol's count */
  int64_t pins;     /* 1 while in the table, +1 per call in flight */
  pthread_mutex_t call_mu;
  struct mgr_entry *next;
} mgr_entry;

/* A reference the server took for a proxy of one of its objects that a
 * reply carries (a dict stored in a list, l[0]): it keeps the object alive
 * until the client that got it has made its own reference.  The client's
 * incref of that ident takes the hold over; otherwise the connection's
 * next request, or its end, drops it. */
typedef struct mgr_hold {
  char ident[20];
  const void *owner; /* the connection whose reply carried it */
  struct mgr_hold *next;
} mgr_hold;

typedef struct mgr_cnx {
  mp_conn *conn;
  mp__mgr_server *srv;
  pthread_t th;
  struct mgr_cnx *prev, *next;
} mgr_cnx;

struct mp__mgr_server {
  pthread_mutex_t mu;
  pthread_cond_t idle; /* signalled when the last connection thread ends */
  mgr_typeinfo *types;
  size_t ntypes;
  mgr_entry **buckets;
  size_t nbuckets, nobjects;
  uint64_t next_id;
  mgr_cnx *cnxs;
  mgr_cnx *ended; /* threads that ended, to join */
  mgr_hold *holds;
  int ncnx;
  mp_listener *listener;
  char *address;
  uint8_t *authkey;
  size_t authkey_len;
  mp__mgr_limits lim;
  atomic_int stopping;
  int wake[2];
  int stop_fd[2]; /* descriptors that stop the serve loop, or -1 */
};

static _Thread_local mp__mgr_server *tls_server;
static _Thread_local int tls_peer_fd = -1;
/* the connection whose reply is being pickled (holds are taken for it) */
static _Thread_local const void *tls_reply_to;

int
mp__mgr_peer_gone(void)
{
  if (tls_peer_fd < 0)
    return 0;
  struct pollfd p = { .fd = tls_peer_fd, .events = POLLRDHUP };
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

mp__mgr_server *
mp__mgr_server_current(void)
{
  return tls_server;
}

const char *
mp__mgr_server_address(const mp__mgr_server *s)
{
  return s->address;
}

void
mp__mgr_server_log_serving(const mp__mgr_server *s)
{
  if (!mp_log_enabled(MP_LOG_INFO))
    return;
  mp_obj *a = mp__mgr_address_obj(s->address); /* CPython prints its repr */
  char *repr = a ? mp_obj_repr(a) : NULL;
  mp_log_info("manager serving at %s", repr ? repr : s->address);
  mp_free(repr);
  mp_obj_free(a);
}

const void *
mp__mgr_server_key(const mp__mgr_server *s, size_t *len)
{
  *len = s->authkey_len;
  return s->authkey;
}

/* ---- the registry ------------------------------------------------------ */

static mgr_typeinfo *
find_type(mp__mgr_server *s, const char *typeid)
{
  for (size_t i = s->ntypes; i-- > 0;) /* later registrations win */
    if (!strcmp(s->types[i].typeid, typeid))
      return &s->types[i];
  return NULL;
}

static int
add_type(mp__mgr_server *s, const char *typeid, const mp_manager_type *t,
         void *shared)
{
  mgr_typeinfo *nt = realloc(s->types, (s->ntypes + 1) * sizeof *nt);
  if (!nt)
    return MP_ENOMEM;
  s->types = nt;
  mgr_typeinfo *ti = &nt[s->ntypes];
  ti->typeid = strdup(typeid);
  ti->type = t;
  ti->shared = shared;
  ti->exposed = mp__mgr_exposed(t);
  if (!ti->typeid || !ti->exposed) {
    free(ti->typeid);
    mp_obj_free(ti->exposed);
    return MP_ENOMEM;
  }
  s->ntypes++;
  return 0;
}

/* ---- the object table ---------------------------------------------------- */

static int
parse_ident(const char *ident, uint64_t *id)
{
  if (!ident || !*ident || strlen(ident) > 16)
    return 0;
  uint64_t v = 0;
  for (const char *p = ident; *p; p++) {
    int d;
    if (*p >= '0' && *p <= '9')
      d = *p - '0';
    else if (*p >= 'a' && *p <= 'f')
      d = *p - 'a' + 10;
    else
      return 0;
    v = v << 4 | (uint64_t)d;
  }
  *id = v;
  return 1;
}

static mgr_entry *
lookup(mp__mgr_server *s, const char *ident)
{
  uint64_t id;
  if (!s->nbuckets || !parse_ident(ident, &id))
    return NULL;
  for (mgr_entry *e = s->buckets[id & (s->nbuckets - 1)]; e; e = e->next)
    if (e->id == id && !strcmp(e->ident, ident))
      return e;
  return NULL;
}

static int
table_insert(mp__mgr_server *s, mgr_entry *e)
{
  if (s->nobjects + 1 > s->nbuckets) {
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 64;
    mgr_entry **b = calloc(nb, sizeof *b);
    if (!b)
      return MP_ENOMEM;
    for (size_t i = 0; i < s->nbuckets; i++)
      for (mgr_entry *x = s->buckets[i], *nx; x; x = nx) {
        nx = x->next;
        x->next = b[x->id & (nb - 1)];
        b[x->id & (nb - 1)] = x;
      }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
  }
  e->next = s->buckets[e->id & (s->nbuckets - 1)];
  s->buckets[e->id & (s->nbuckets - 1)] = e;
  s->nobjects++;
  return 0;
}

static void
table_remove(mp__mgr_server *s, mgr_entry *e)
{
  for (mgr_entry **pp = &s->buckets[e->id & (s->nbuckets - 1)]; *pp;
       pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      s->nobjects--;
      return;
    }
}

static void
entry_destroy(mgr_entry *e)
{
  if (e->ti->type->destroy)
    e->ti->type->destroy(e->obj);
  pthread_mutex_destroy(&e->call_mu);
  free(e);
}

/* Drop a pin (s->mu held); returns the entry to destroy once unlocked. */
static mgr_entry *
unpin_locked(mgr_entry *e)
{
  return --e->pins == 0 ? e : NULL;
}

static void
unpin(mp__mgr_server *s, mgr_entry *e)
{
  pthread_mutex_lock(&s->mu);
  mgr_entry *d = unpin_locked(e);
  pthread_mutex_unlock(&s->mu);
  if (d)
    entry_destroy(d);
}

/* Register `obj` of `ti` with count 1.  Takes `obj` (destroyed on
 * failure). */
static int
register_obj(mp__mgr_server *s, mgr_typeinfo *ti, void *obj, mgr_entry **out)
{
  mgr_entry *e = calloc(1, sizeof *e);
  if (!e) {
    if (ti->type->destroy)
      ti->type->destroy(obj);
    return MP_ENOMEM;
  }
  pthread_mutex_init(&e->call_mu, NULL);
  e->ti = ti;
  e->obj = obj;
  e->refcount = 1;
  e->pins = 1;
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  if (s->nobjects >= s->lim.max_objects)
    rc = mp_seterr(MP_ELIMIT, "the server holds its maximum of %zu objects",
                   s->lim.max_objects);
  else if (atomic_load(&s->stopping))
    rc = mp_seterr(MP_ESTATE, "the server is shutting down");
  if (!rc) {
    e->id = ++s->next_id;
    snprintf(e->ident, sizeof e->ident, "%llx", (unsigned long long)e->id);
    rc = table_insert(s, e);
  }
  pthread_mutex_unlock(&s->mu);
  if (rc) {
    entry_destroy(e);
    return rc;
  }
  *out = e;
  return 0;
}

/* A new object of `ti` from (args, kwds). */
static int
create_obj(mp__mgr_server *s, mgr_typeinfo *ti, mp_obj *args, mp_obj *kwds,
           mgr_entry **out)
{
  void *obj = NULL;
  int rc;
  if (ti->shared) {
    obj = mp__mgr_builtin_ref(ti->type, ti->shared);
    rc = obj ? 0 : mp_seterr(MP_ENOTSUP, "not a shareable type");
  } else if (!ti->type->create) {
    rc = mp_seterr(MP_EINVAL, "typeid '%s' cannot be created", ti->typeid);
  } else {
    mp__errdetail_clear();
    rc = ti->type->create(args, kwds, &obj);
  }
  if (rc)
    return rc < 0 ? rc : MP_EINVAL;
  return register_obj(s, ti, obj, out);
}

int
mp__mgr_server_incref(mp__mgr_server *s, const char *ident)
{
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident);
  if (e)
    e->refcount++;
  pthread_mutex_unlock(&s->mu);
  return e ? 0 : mp_seterr(MP_ENOTFOUND, "no object with ident '%s'", ident);
}

int
mp__mgr_server_hold(mp__mgr_server *s, const char *ident)
{
  if (s != tls_server || !tls_reply_to)
    return 0; /* not a reply: the receiver makes its own reference */
  mgr_hold *h = calloc(1, sizeof *h);
  if (!h)
    return MP_ENOMEM;
  snprintf(h->ident, sizeof h->ident, "%s", ident);
  h->owner = tls_reply_to;
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident);
  if (e) {
    e->refcount++;
    h->next = s->holds;
    s->holds = h;
  }
  pthread_mutex_unlock(&s->mu);
  if (!e)
    free(h);
  return e ? 0 : mp_seterr(MP_ENOTFOUND, "no object with ident '%s'", ident);
}

/* A client's incref request: it takes over a hold on the ident if there
 * is one, else adds a reference. */
static int
incref_request(mp__mgr_server *s, const char *ident)
{
  mgr_hold *taken = NULL;
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident);
  if (e) {
    for (mgr_hold **pp = &s->holds; *pp; pp = &(*pp)->next)
      if (!strcmp((*pp)->ident, ident)) {
        taken = *pp;
        *pp = taken->next;
        break;
      }
    if (!taken)
      e->refcount++;
  }
  pthread_mutex_unlock(&s->mu);
  free(taken);
  return e ? 0 : mp_seterr(MP_ENOTFOUND, "no object with ident '%s'", ident);
}

static int decref(mp__mgr_server *s, const char *ident);

/* Drop the holds the replies on connection `owner` took. */
static void
release_holds(mp__mgr_server *s, const void *owner)
{
  mgr_hold *mine = NULL;
  pthread_mutex_lock(&s->mu);
  for (mgr_hold **pp = &s->holds; *pp;) {
    mgr_hold *h = *pp;
    if (h->owner == owner) {
      *pp = h->next;
      h->next = mine;
      mine = h;
    } else {
      pp = &h->next;
    }
  }
  pthread_mutex_unlock(&s->mu);
  while (mine) {
    mgr_hold *n = mine->next;
    decref(s, mine->ident);
    free(mine);
    mine = n;
  }
}

static int
decref(mp__mgr_server *s, const char *ident)
{
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident), *d = NULL;
  if (e && --e->refcount == 0) {
    table_remove(s, e);
    d = unpin_locked(e);
  }
  pthread_mutex_unlock(&s->mu);
  if (d)
    entry_destroy(d);
  return e ? 0 : mp_seterr(MP_ENOTFOUND, "no object with ident '%s'", ident);
}

void
mp__mgr_server_decref(mp__mgr_server *s, const char *ident)
{
  decref(s, ident);
}

void *
mp__mgr_server_pin(mp__mgr_server *s, const char *ident,
                   const mp_manager_type *type, void **pin)
{
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident);
  if (e && type && e->ti->type != type)
    e = NULL;
  if (e)
    e->pins++;
  pthread_mutex_unlock(&s->mu);
  *pin = e;
  return e ? e->obj : NULL;
}

void
mp__mgr_server_unpin(mp__mgr_server *s, void *pin)
{
  if (pin)
    unpin(s, pin);
}

/* ---- server methods --------------------------------------------------------- */

enum { ACT_NONE, ACT_SERVE, ACT_SHUTDOWN };

static int
cmp_ident(const void *a, const void *b)
{
  const mgr_entry *x = *(mgr_entry *const *)a, *y = *(mgr_entry *const *)b;
  return strcmp(x->ident, y->ident);
}

static mp_obj *
debug_info(mp__mgr_server *s)
{
  mp__buf b = { 0 };
  pthread_mutex_lock(&s->mu);
  mgr_entry **all = s->nobjects ? malloc(s->nobjects * sizeof *all) : NULL;
  size_t n = 0;
  if (all)
    for (size_t i = 0; i < s->nbuckets; i++)
      for (mgr_entry *e = s->buckets[i]; e; e = e->next) {
        e->pins++;
        all[n++] = e;
      }
  pthread_mutex_unlock(&s->mu);
  if (n > 1)
    qsort(all, n, sizeof *all, cmp_ident);
  for (size_t i = 0; i < n; i++) {
    char line[200];
    mp_obj *r = NULL;
    char *text = NULL;
    if (all[i]->ti->type->repr &&
        !all[i]->ti->type->repr(all[i]->obj, &r))
      text = mp_obj_str(r);
    mp_obj_free(r);
    snprintf(line, sizeof line, "%s  %s:       refcount=%lld\n    %.75s",
             i ? "\n" : "", all[i]->ident, (long long)all[i]->refcount,
             text ? text : all[i]->ti->typeid);
    mp_free(text);
    mp__buf_append(&b, line, strlen(line));
    unpin(s, all[i]);
  }
  free(all);
  mp_obj *o = mp_str_new_len(b.data ? (char *)b.data : "", b.len);
  mp__buf_release(&b);
  return o;
}

static mp_obj *
server_method(mp__mgr_server *s, const char *method, mp_obj *args,
              mp_obj *kwds, int *act)
{
  mp_obj *const *a;
  size_t n;
  const char *str;
  size_t len;
  mp_seq_items(args, &a, &n);
  if (!strcmp(method, "dummy"))
    return mp__mgr_reply_take("#RETURN", NULL);
  if (!strcmp(method, "number_of_objects")) {
    pthread_mutex_lock(&s->mu);
    size_t k = s->nobjects;
    pthread_mutex_unlock(&s->mu);
    return mp__mgr_reply_take("#RETURN", mp_int_new((int64_t)k));
  }
  if (!strcmp(method, "debug_info"))
    return mp__mgr_reply_take("#RETURN", debug_info(s));
  if (!strcmp(method, "shutdown")) {
    *act = ACT_SHUTDOWN;
    return mp__mgr_reply_take("#RETURN", NULL);
  }
  if (!strcmp(method, "accept_connection")) {
    *act = ACT_SERVE;
    return mp__mgr_reply_take("#RETURN", NULL);
  }
  if (!strcmp(method, "create")) {
    if (n < 1 || mp_str_get(a[0], &str, &len))
      return mp__mgr_traceback("TypeError",
                               "create() needs a typeid (str) argument");
    mgr_typeinfo *ti = find_type(s, str);
    if (!ti)
      return mp__mgr_traceback("KeyError", "'%.100s'", str);
    mp_obj *rest = mp_tuple_from(n - 1, a + 1);
    if (!rest)
      return NULL;
    mgr_entry *e;
    int rc = create_obj(s, ti, rest, kwds, &e);
    mp_obj_free(rest);
    if (rc)
      return mp__mgr_error_reply(rc, mp_errdetail(), NULL);
    return mp__mgr_reply_take(
        "#RETURN", MP_TUPLE(mp_str_new(e->ident), mp_obj_ref(ti->exposed)));
  }
  if (!strcmp(method, "incref") || !strcmp(method, "decref")) {
    if (n != 1 || mp_str_get(a[0], &str, &len))
      return mp__mgr_traceback("TypeError", "%s() takes one ident (str)",
                               method);
    int rc = method[0] == 'i' ? incref_request(s, str) : decref(s, str);
    if (rc)
      return mp__mgr_traceback("KeyError", "'%.100s'", str);
    return mp__mgr_reply_take("#RETURN", NULL);
  }
  if (!strcmp(method, "get_methods")) {
    const char *typeid, *ident;
    if (n != 1 || mp__mgr_token_parts(a[0], &typeid, &ident))
      return mp__mgr_traceback("TypeError", "get_methods() takes a Token");
    pthread_mutex_lock(&s->mu);
    mgr_entry *e = lookup(s, ident);
    mp_obj *ex = e ? mp_obj_ref(e->ti->exposed) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (!e)
      return mp__mgr_traceback("KeyError", "'%.100s'", ident);
    return mp__mgr_reply_take("#RETURN", ex);
  }
  return mp__mgr_traceback("AssertionError", "'%.100s' unrecognized", method);
}

/* ---- object calls -------------------------------------------------------- */

static mp_obj *
fallback(mgr_entry *e, const char *method)
{
  const mp_manager_type *t = e->ti->type;
  mp_obj *v = NULL;
  int rc;
  int locked = !(t->flags & MP_MANAGER_CONCURRENT);
  if (!strcmp(method, "#GETVALUE")) {
    if (!t->getvalue)
      return mp__mgr_traceback("AttributeError",
                               "'%s' object has no value to get",
                               e->ti->typeid);
    if (locked)
      pthread_mutex_lock(&e->call_mu);
    rc = t->getvalue(e->obj, &v);
    if (locked)
      pthread_mutex_unlock(&e->call_mu);
    return rc ? mp__mgr_error_reply(rc, mp_errdetail(), NULL)
              : mp__mgr_reply_take("#RETURN", v);
  }
  if (!strcmp(method, "__str__") || !strcmp(method, "__repr__")) {
    if (t->repr) {
      if (locked)
        pthread_mutex_lock(&e->call_mu);
      rc = t->repr(e->obj, &v);
      if (locked)
        pthread_mutex_unlock(&e->call_mu);
      if (rc)
        return mp__mgr_error_reply(rc, mp_errdetail(), NULL);
    } else {
      v = mp__mgr_fmt("<%s object, ident '%s'>", e->ti->typeid, e->ident);
    }
    return mp__mgr_reply_take("#RETURN", v);
  }
  char *ex = mp_obj_repr(e->ti->exposed);
  mp_obj *r = mp__mgr_traceback(
      "AttributeError", "method '%.100s' of '%s' object is not in exposed=%.400s",
      method, e->ti->typeid, ex ? ex : "()");
  mp_free(ex);
  return r;
}

static mp_obj *
object_call(mp__mgr_server *s, const char *ident, const char *method,
            mp_obj *args, mp_obj *kwds)
{
  pthread_mutex_lock(&s->mu);
  mgr_entry *e = lookup(s, ident);
  if (e)
    e->pins++;
  pthread_mutex_unlock(&s->mu);
  if (!e)
    return mp__mgr_traceback("KeyError", "'%.100s'", ident ? ident : "None");
  const mp_manager_type *t = e->ti->type;
  const mp_manager_method *m = NULL;
  for (size_t i = 0; i < t->nmethods; i++)
    if (!strcmp(t->methods[i].name, method)) {
      m = &t->methods[i];
      break;
    }
  mp_obj *reply;
  if (!m) {
    reply = fallback(e, method);
  } else {
    mp_obj *res = NULL;
    int locked = !(t->flags & MP_MANAGER_CONCURRENT);
    if (locked)
      pthread_mutex_lock(&e->call_mu);
    mp__errdetail_clear();
    int rc = m->fn(e->obj, args, kwds, &res);
    if (locked)
      pthread_mutex_unlock(&e->call_mu);
    if (rc < 0) {
      reply = mp__mgr_error_reply(rc, mp_errdetail(), res);
    } else if (m->typeid) {
      mgr_typeinfo *rti = find_type(s, m->typeid);
      mgr_entry *ne = NULL;
      mp_obj *a1 = MP_TUPLE(res ? res : mp_none());
      rc = !rti ? mp_seterr(MP_ENOTFOUND, "no typeid '%s'", m->typeid)
                : !a1 ? MP_ENOMEM : 0;
      if (!rc) {
        mp_obj *empty = mp_dict_new();
        rc = empty ? create_obj(s, rti, a1, empty, &ne) : MP_ENOMEM;
        mp_obj_free(empty);
      }
      mp_obj_free(a1);
      if (rc)
        reply = mp__mgr_error_reply(rc, mp_errdetail(), NULL);
      else
        reply = mp__mgr_reply_take(
            "#PROXY",
            MP_TUPLE(mp_obj_ref(rti->exposed),
                     mp__mgr_token_new(rti->typeid, s->address, ne->ident)));
    } else {
      reply = mp__mgr_reply_take("#RETURN", res);
    }
  }
  unpin(s, e);
  return reply;
}

/* One request: the reply to send (NULL: out of memory), and in *act what
 * the connection does next. */
static mp_obj *
dispatch(mp__mgr_server *s, const mp_obj *req, int serving, int *act)
{
  const char *ident, *method;
  mp_obj *args, *kwds;
  *act = ACT_NONE;
  if (mp__mgr_request_parts(req, &ident, &method, &args, &kwds))
    return mp__mgr_traceback("ValueError", "%s", mp_errdetail());
  if (!serving) {
    mp_obj *r = server_method(s, method, args, kwds, act);
    return r;
  }
  return object_call(s, ident, method, args, kwds);
}

/* ---- connections ------------------------------------------------------------- */

static int
send_reply(mp_conn *c, mp_obj *reply)
{
  if (!reply)
    reply = mp__mgr_traceback("MemoryError", "out of memory");
  if (!reply)
    return MP_ENOMEM;
  /* Encode, then release the reply before it leaves when it holds no
   * descriptors: a nested proxy the reply carried (d.pop()) then drops
   * its reference before the client can ask number_of_objects. */
  void *data = NULL;
  size_t len = 0, nfds = 0;
  int *fds = NULL;
  tls_reply_to = c;
  int rc = mp_pickle_dumps_fds(reply, NULL, &data, &len, &fds, &nfds);
  tls_reply_to = NULL;
  if (!rc) {
    if (!nfds) {
      mp_obj_free(reply);
      reply = NULL;
    }
    rc = mp__conn_send_msg(c, data, len, fds, nfds);
    mp_free(data);
    mp_free(fds);
    if (rc != MP_ENOTSUP && rc != MP_ELIMIT) { /* those sent nothing */
      mp_obj_free(reply);
      return rc;
    }
  }
  if (rc != MP_ENOMEM) {
    /* the value cannot be pickled (a handle over TCP, a cycle...) */
    mp_obj *u = mp__mgr_reply_take(
        "#UNSERIALIZABLE",
        mp__mgr_fmt("Traceback (most recent call last):\nTypeError: cannot "
                    "pickle the reply: %s: %s\n",
                    mp_err_name(rc), mp_errdetail()));
    rc = u ? mp_conn_send(c, u) : MP_ENOMEM;
    mp_obj_free(u);
  }
  mp_obj_free(reply);
  return rc;
}

static void
serve_connection(mp__mgr_server *s, mp_conn *c)
{
  double hs = 10.0;
  if (mp_conn_deliver_challenge(c, s->authkey, s->authkey_len, hs) ||
      mp_conn_answer_challenge(c, s->authkey, s->authkey_len, hs))
    return;
  int serving = 0;
  tls_peer_fd = mp_conn_fileno(c);
  mp_conn_set_readahead(c, 1); /* this thread alone reads it */
  while (!atomic_load(&s->stopping)) {
    mp_obj *req = NULL;
    int rc = mp_conn_recv(c, &req, MP_FOREVER);
    if (rc == MP_EMALFORMED || rc == MP_ECYCLE || rc == MP_ELIMIT ||
        rc == MP_ENOTSUP || rc == MP_EBADREF || rc == MP_ENOTFOUND) {
      /* the message was read whole: the connection is still in step */
      mp_obj *r = mp__mgr_traceback("pickle.UnpicklingError", "%s: %s",
                                    mp_err_name(rc), mp_errdetail());
      if (send_reply(c, r) || !serving)
        return;
      continue;
    }
    if (rc)
      return; /* EOF, a reset, an oversized frame, a torn message */
    int act;
    mp_obj *reply = dispatch(s, req, serving, &act);
    mp_obj_free(req);
    release_holds(s, c); /* the client has made its references by now */
    rc = send_reply(c, reply);
    if (rc)
      return;
    if (act == ACT_SHUTDOWN) {
      mp__mgr_server_stop(s);
      return;
    }
    if (act == ACT_SERVE)
      serving = 1;
    else if (!serving)
      return;
  }
}

static void *
cnx_thread(void *arg)
{
  mgr_cnx *x = arg;
  mp__mgr_server *s = x->srv;
  tls_server = s;
  mp__proxy_wire_on = 1; /* proxies travel as CPython's RebuildProxy */
  serve_connection(s, x->conn);
  release_holds(s, x->conn);
  tls_server = NULL;
  tls_peer_fd = -1;
  pthread_mutex_lock(&s->mu);
  if (x->prev)
    x->prev->next = x->next;
  else
    s->cnxs = x->next;
  if (x->next)
    x->next->prev = x->prev;
  mp_conn_free(x->conn); /* under mu: interrupt_all reads the list's fds */
  x->conn = NULL;
  x->next = s->ended; /* joined by the accept loop or at stop */
  s->ended = x;
  if (--s->ncnx == 0)
    pthread_cond_broadcast(&s->idle);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Join the connection threads that ended (they hold nothing more). */
static void
join_ended(mp__mgr_server *s)
{
  pthread_mutex_lock(&s->mu);
  mgr_cnx *x = s->ended;
  s->ended = NULL;
  pthread_mutex_unlock(&s->mu);
  while (x) {
    mgr_cnx *nx = x->next;
    pthread_join(x->th, NULL);
    free(x);
    x = nx;
  }
}

static void
start_cnx(mp__mgr_server *s, mp_conn *c)
{
  mgr_cnx *x = calloc(1, sizeof *x);
  if (!x) {
    mp_conn_free(c);
    return;
  }
  x->conn = c;
  x->srv = s;
  pthread_mutex_lock(&s->mu);
  if (s->ncnx >= s->lim.max_connections || atomic_load(&s->stopping)) {
    pthread_mutex_unlock(&s->mu);
    mp_conn_free(c);
    free(x);
    return;
  }
  x->next = s->cnxs;
  if (s->cnxs)
    s->cnxs->prev = x;
  s->cnxs = x;
  s->ncnx++;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 256 * 1024);
  int rc = pthread_create(&x->th, &at, cnx_thread, x);
  pthread_attr_destroy(&at);
  if (rc) {
    s->cnxs = x->next;
    if (x->next)
      x->next->prev = NULL;
    s->ncnx--;
    pthread_mutex_unlock(&s->mu);
    mp_conn_free(c);
    free(x);
    return;
  }
  pthread_mutex_unlock(&s->mu);
}

/* ---- life -------------------------------------------------------------- */

int
mp__mgr_server_new(mp__mgr_server **out, const char *address,
                   const void *authkey, size_t authkey_len,
                   const mp_manager_type *const *types, size_t ntypes,
                   char *const *shared, size_t nshared,
                   const mp__mgr_limits *limits)
{
  mp__mgr_server *s = calloc(1, sizeof *s);
  if (!s)
    return MP_ENOMEM;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->idle, NULL);
  s->wake[0] = s->wake[1] = -1;
  s->stop_fd[0] = s->stop_fd[1] = -1;
  s->lim.max_objects = limits && limits->max_objects ? limits->max_objects
                                                     : 1000000;
  s->lim.max_connections =
      limits && limits->max_connections > 0 ? limits->max_connections : 1024;
  s->lim.max_request = limits && limits->max_request ? limits->max_request
                                                     : (uint64_t)64 << 20;
  int rc = 0;
  for (size_t i = 0; !rc && mp__mgr_builtin_types[i]; i++)
    rc = add_type(s, mp__mgr_builtin_types[i]->typeid,
                  mp__mgr_builtin_types[i], NULL);
  for (size_t i = 0; !rc && i < ntypes; i++)
    rc = add_type(s, types[i]->typeid, types[i], NULL);
  for (size_t i = 0; !rc && i + 1 < nshared * 2; i += 2) {
    mgr_typeinfo *base = find_type(s, shared[i + 1]);
    void *obj = NULL;
    mp_obj *noargs = mp_tuple_take(0), *nokw = mp_dict_new();
    if (!base)
      rc = mp_seterr(MP_ENOTFOUND, "no typeid '%s' to share", shared[i + 1]);
    else if (!noargs || !nokw)
      rc = MP_ENOMEM;
    else if (!base->type->create ||
             !mp__mgr_is_builtin(base->type))
      rc = mp_seterr(MP_ENOTSUP, "typeid '%s' cannot be shared",
                     shared[i + 1]);
    else if (!(rc = base->type->create(noargs, nokw, &obj)))
      /* the registry keeps create's reference; creates take more */
      rc = add_type(s, shared[i], base->type, obj);
    if (rc && obj)
      base->type->destroy(obj);
    mp_obj_free(noargs);
    mp_obj_free(nokw);
  }
  if (!rc && pipe2(s->wake, O_CLOEXEC | O_NONBLOCK))
    rc = mp__errno();
  if (!rc) {
    mp_listener_opts lo = { .backlog = 128, .max_recv = s->lim.max_request };
    rc = mp_listener_new(&s->listener, address, &lo);
  }
  if (!rc) {
    s->address = strdup(mp_listener_address(s->listener));
    s->authkey = malloc(authkey_len ? authkey_len : 1);
    if (!s->address || !s->authkey)
      rc = MP_ENOMEM;
    else
      memcpy(s->authkey, authkey, authkey_len);
    s->authkey_len = authkey_len;
  }
  if (rc) {
    mp__mgr_server_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int
mp__mgr_server_watch_fd(mp__mgr_server *s, int fd)
{
  for (int i = 0; i < 2; i++)
    if (s->stop_fd[i] < 0) {
      s->stop_fd[i] = fd;
      return 0;
    }
  return mp_seterr(MP_ELIMIT, "the server watches two descriptors at most");
}

void
mp__mgr_server_stop(mp__mgr_server *s)
{
  atomic_store(&s->stopping, 1);
  char b = 1;
  if (s->wake[1] >= 0 && write(s->wake[1], &b, 1) < 0) {
    /* full pipe: a wake is already pending */
  }
}

/* Wake every connection thread: blocked receives see the socket shut
 * down, blocked waits in objects are interrupted. */
static void
interrupt_all(mp__mgr_server *s)
{
  pthread_mutex_lock(&s->mu);
  for (mgr_cnx *x = s->cnxs; x; x = x->next) {
    int fd = mp_conn_fileno(x->conn);
    if (fd >= 0)
      shutdown(fd, SHUT_RDWR);
  }
  for (size_t i = 0; i < s->nbuckets; i++)
    for (mgr_entry *e = s->buckets[i]; e; e = e->next)
      if (e->ti->type->interrupt)
        e->ti->type->interrupt(e->obj);
  for (size_t i = 0; i < s->ntypes; i++)
    if (s->types[i].shared && s->types[i].type->interrupt)
      s->types[i].type->interrupt(s->types[i].shared);
  pthread_mutex_unlock(&s->mu);
}

int
mp__mgr_server_serve(mp__mgr_server *s)
{
  mp__mgr_server *prev = tls_server;
  while (!atomic_load(&s->stopping)) {
    /* watched descriptors: the stop channel (readable when the parent
     * asks the server to stop) and the parent's sentinel (it died) */
    mp_waitable w[4] = { MP_WAITABLE_LISTENER(s->listener),
                         MP_WAITABLE_FD(s->wake[0]) };
    size_t nw = 2;
    for (int i = 0; i < 2; i++)
      if (s->stop_fd[i] >= 0)
        w[nw++] = MP_WAITABLE_FD(s->stop_fd[i]);
    int rc = mp_wait(w, nw, MP_FOREVER);
    int watched = 0;
    for (size_t i = 2; i < nw; i++)
      watched |= w[i].ready;
    if (rc < 0 || w[1].ready || watched || atomic_load(&s->stopping))
      break;
    mp_conn *c = NULL;
    rc = mp_listener_accept(s->listener, &c, 0);
    join_ended(s);
    if (!rc)
      start_cnx(s, c);
    else if (rc == MP_EMFILE || rc == -ENFILE || rc == MP_ENOMEM) {
      /* out of descriptors: let connections end before accepting more */
      struct pollfd p = { .fd = s->wake[0], .events = POLLIN };
      poll(&p, 1, 50);
    }
  }
  atomic_store(&s->stopping, 1);
  interrupt_all(s);
  pthread_mutex_lock(&s->mu);
  while (s->ncnx > 0) {
    pthread_mutex_unlock(&s->mu);
    interrupt_all(s); /* a thread may have begun a wait since */
    pthread_mutex_lock(&s->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (s->ncnx > 0)
      pthread_cond_timedwait(&s->idle, &s->mu, &ts);
  }
  pthread_mutex_unlock(&s->mu);
  join_ended(s);
  mp_listener_close(s->listener);
  tls_server = prev;
  return 0;
}

/* Destroy every object (no lock held while destroying: an object's values
 * may release local proxies, which decref other entries). */
void
mp__mgr_server_reset(mp__mgr_server *s)
{
  tls_server = s;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    mgr_entry *e = NULL;
    for (size_t i = 0; !e && i < s->nbuckets; i++)
      e = s->buckets[i];
    mgr_entry *d = NULL;
    if (e) {
      table_remove(s, e);
      d = unpin_locked(e);
    }
    pthread_mutex_unlock(&s->mu);
    if (!e)
      break;
    if (d)
      entry_destroy(d);
  }
  tls_server = NULL;
}

void
mp__mgr_server_free(mp__mgr_server *s)
{
  if (!s)
    return;
  mp__mgr_server_reset(s);
  for (size_t i = 0; i < s->ntypes; i++) {
    if (s->types[i].shared && s->types[i].type->destroy)
      s->types[i].type->destroy(s->types[i].shared);
    free(s->types[i].typeid);
    mp_obj_free(s->types[i].exposed);
  }
  free(s->types);
  free(s->buckets);
  mp_listener_free(s->listener);
  if (s->wake[0] >= 0)
    close(s->wake[0]);
  if (s->wake[1] >= 0)
    close(s->wake[1]);
  free(s->address);
  if (s->authkey)
    memset(s->authkey, 0, s->authkey_len);
  free(s->authkey);
  pthread_cond_destroy(&s->idle);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int
mp__mgr_server_dispatch_bytes(mp__mgr_server *s, const void *data, size_t len,
                              void **reply, size_t *rlen)
{
  mp_obj *req = NULL;
  mp_obj *r;
  int act;
  tls_server = s;
  mp__proxy_wire_on++;
  int rc = mp_pickle_loads(data, len, NULL, &req);
  if (rc) {
    r = mp__mgr_traceback("pickle.UnpicklingError", "%s", mp_errdetail());
  } else {
    /* a first byte decides between a server method and an object call */
    const char *ident = NULL, *m;
    mp_obj *a, *k;
    int serving = !mp__mgr_request_parts(req, &ident, &m, &a, &k) && ident;
    r = dispatch(s, req, serving, &act);
  }
  mp_obj_free(req);
  if (r)
    rc = mp_pickle_dumps(r, NULL, reply, rlen);
  mp__proxy_wire_on--;
  tls_server = NULL;
  mp_obj_free(r);
  return r ? rc : MP_ENOMEM;
}
