/* SPDX-License-Identifier: MIT */
/* The client side: proxies, their per-thread connections, the one-shot
 * server-method calls, and the proxy handle type (docs/python-wire.md
 * section 4).
 *
 * A link is one manager address + key in this process, shared by its
 * proxies (a registry finds the link of a rebuilt proxy).  It keeps one
 * serve-loop connection per (process, thread), opened on a thread's first
 * call with accept_connection, as CPython's per-thread connection; a fork
 * child never uses its parent's (they are keyed by pid and tid; a child's
 * inherited copies are closed, never written, when it opens its own).
 * Server methods (create, incref, decref ...) each use a new one-shot
 * connection, as CPython's client does, so a C client works against a
 * CPython server. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn/conn_internal.h"
#include "manager/manager_internal.h"
#include "obj/obj_internal.h"
#include "platform/platform.h"

#define REPLY_SPIN_NS 25000 /* poll for a call's reply at most this long */

typedef struct lconn {
  uint32_t pid, tid;
  mp_conn *c;
  struct lconn *next;
} lconn;

typedef struct mgr_link {
  long refs; /* under links_mu */
  char *address;
  uint8_t *key;
  size_t keylen;
  mp__pmutex mu; /* a fork child finds it unlocked */
  lconn *conns;
  struct mgr_link *next;
} mgr_link;

struct mp_proxy {
  atomic_long refs;
  mgr_link *link;
  mp__mgr_server *local; /* the server in this process that holds it */
  char *typeid, *ident;
  mp_obj *exposed;
  atomic_uint owner_pid; /* the process holding a server reference */
};

static pthread_mutex_t links_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t links_once = PTHREAD_ONCE_INIT;
static mgr_link *links;

/* links_mu is a leaf lock a fork child may take (its proxies' first
 * calls): held across every fork, so no child inherits it locked */
static void
links_setup(void)
{
  mp__fork_guard_mutex(&links_mu);
}

static void
links_lock(void)
{
  pthread_once(&links_once, links_setup);
  pthread_mutex_lock(&links_mu);
}

static mgr_link *
link_get(const char *address, const void *key, size_t keylen)
{
  links_lock();
  mgr_link *l;
  for (l = links; l; l = l->next)
    if (!strcmp(l->address, address) && l->keylen == keylen &&
        !memcmp(l->key, key, keylen))
      break;
  if (l) {
    l->refs++;
    pthread_mutex_unlock(&links_mu);
    return l;
  }
  l = calloc(1, sizeof *l);
  if (l) {
    l->address = strdup(address);
    l->key = malloc(keylen ? keylen : 1);
    if (!l->address || !l->key) {
      free(l->address);
      free(l->key);
      free(l);
      l = NULL;
    } else {
      memcpy(l->key, key, keylen);
      l->keylen = keylen;
      l->refs = 1;
      mp__pmutex_init(&l->mu);
      l->next = links;
      links = l;
    }
  }
  pthread_mutex_unlock(&links_mu);
  return l;
}

static void
link_put(mgr_link *l)
{
  if (!l)
    return;
  links_lock();
  if (--l->refs > 0) {
    pthread_mutex_unlock(&links_mu);
    return;
  }
  for (mgr_link **pp = &links; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  pthread_mutex_unlock(&links_mu);
  for (lconn *x = l->conns, *nx; x; x = nx) {
    nx = x->next;
    mp_conn_free(x->c);
    free(x);
  }
  mp__pmutex_destroy(&l->mu);
  memset(l->key, 0, l->keylen);
  free(l->key);
  free(l->address);
  free(l);
}

static const char *
thread_name(char *buf, size_t cap)
{
  const char *pn = mp_process_name(mp_current_process());
  snprintf(buf, cap, "%s|Thread-%u", pn ? pn : "Process", mp__gettid());
  return buf;
}

/* Is thread `tid` of this process still running? */
static int
thread_alive(uint32_t tid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%u", tid);
  return access(path, F_OK) == 0;
}

/* A connection for this thread (borrowed, owned by the link).  Opening a
 * new one first drops those of threads that ended. */
static int
link_conn(mgr_link *l, mp_conn **out)
{
  uint32_t pid = mp__getpid(), tid = mp__gettid();
  lconn *stale = NULL;
  mp__pmutex_lock(&l->mu);
  for (lconn **pp = &l->conns; *pp;) {
    lconn *x = *pp;
    if (x->pid == pid && x->tid == tid) {
      *out = x->c;
      mp__pmutex_unlock(&l->mu);
      for (lconn *s = stale, *ns; s; s = ns) {
        ns = s->next;
        mp_conn_free(s->c);
        free(s);
      }
      return 0;
    }
    if (x->pid != pid) { /* a parent's: close our copy, never use it */
      *pp = x->next;
      x->next = stale;
      stale = x;
      continue;
    }
    pp = &x->next;
  }
  /* none for this thread yet: drop those of threads that ended (CPython
   * closes them at thread exit), so short-lived threads do not pile up */
  for (lconn **pp = &l->conns; *pp;) {
    lconn *x = *pp;
    if (!thread_alive(x->tid)) {
      *pp = x->next;
      x->next = stale;
      stale = x;
      continue;
    }
    pp = &x->next;
  }
  mp__pmutex_unlock(&l->mu);
  for (lconn *s = stale, *ns; s; s = ns) {
    ns = s->next;
    mp_conn_free(s->c);
    free(s);
  }
  mp_client_opts co = { .authkey = l->key, .authkey_len = l->keylen };
  mp_conn *c = NULL;
  int rc = mp_client(&c, l->address, &co);
  if (rc)
    return rc;
  char name[128];
  mp_obj *args = MP_TUPLE(mp_str_new(thread_name(name, sizeof name)));
  mp_obj *req = args ? mp__mgr_request(NULL, "accept_connection", args, NULL)
                     : NULL;
  mp_obj_free(args);
  mp_obj *reply = NULL, *v = NULL;
  rc = req ? mp_conn_send(c, req) : MP_ENOMEM;
  mp_obj_free(req);
  if (!rc)
    rc = mp_conn_recv(c, &reply, MP_FOREVER);
  if (!rc)
    rc = mp__mgr_reply_read(reply, &v);
  mp_obj_free(reply);
  mp_obj_free(v);
  if (rc) {
    mp_conn_free(c);
    return rc < 0 ? rc : MP_EMALFORMED;
  }
  mp_conn_set_readahead(c, 1); /* only this thread reads it */
  lconn *x = calloc(1, sizeof *x);
  if (!x) {
    mp_conn_free(c);
    return MP_ENOMEM;
  }
  x->pid = pid;
  x->tid = tid;
  x->c = c;
  mp__pmutex_lock(&l->mu);
  x->next = l->conns;
  l->conns = x;
  mp__pmutex_unlock(&l->mu);
  *out = c;
  return 0;
}

/* Forget this thread's connection after a failure on it. */
static void
link_drop(mgr_link *l, mp_conn *c)
{
  lconn *found = NULL;
  mp__pmutex_lock(&l->mu);
  for (lconn **pp = &l->conns; *pp; pp = &(*pp)->next)
    if ((*pp)->c == c) {
      found = *pp;
      *pp = found->next;
      break;
    }
  mp__pmutex_unlock(&l->mu);
  if (found) {
    mp_conn_free(found->c);
    free(found);
  }
}

int
mp__mgr_call_server(const char *address, const void *key, size_t keylen,
                    const char *method, mp_obj *args, mp_obj *kwds,
                    mp_obj **out)
{
  mp_client_opts co = { .authkey = key, .authkey_len = keylen };
  mp_conn *c = NULL;
  if (out)
    *out = NULL;
  int rc = mp_client(&c, address, &co);
  if (rc)
    return rc;
  mp_obj *req = mp__mgr_request(NULL, method, args, kwds);
  mp_obj *reply = NULL, *v = NULL;
  mp__proxy_wire_on++; /* proxies in the args and reply: RebuildProxy */
  rc = req ? mp_conn_send(c, req) : MP_ENOMEM;
  mp_obj_free(req);
  if (!rc)
    rc = mp_conn_recv(c, &reply, MP_FOREVER);
  mp__proxy_wire_on--;
  mp_conn_free(c);
  if (!rc) {
    rc = mp__mgr_reply_read(reply, &v);
    if (rc == 1) {
      mp_obj_free(v);
      v = NULL;
      rc = mp_seterr(MP_EMALFORMED, "#PROXY reply to a server method");
    }
  }
  mp_obj_free(reply);
  if (!rc && out)
    *out = v;
  else
    mp_obj_free(v);
  return rc;
}

static int
ident_call(mgr_link *l, const char *method, const char *ident)
{
  mp_obj *args = MP_TUPLE(mp_str_new(ident));
  if (!args)
    return MP_ENOMEM;
  int rc = mp__mgr_call_server(l->address, l->key, l->keylen, method, args,
                               NULL, NULL);
  mp_obj_free(args);
  return rc;
}

/* The proxies holding a server reference for this process, released at
 * its exit (a child's too: Python's proxies decref through Finalize), so a
 * child that never frees what it received leaves no count behind. */
static pthread_mutex_t owned_mu = PTHREAD_MUTEX_INITIALIZER;
static mp_proxy **owned;
static size_t nowned, capowned;
static uint32_t owned_pid;

static void
owned_at_exit(void *arg)
{
  uint32_t me = mp__getpid();
  pthread_mutex_lock(&owned_mu);
  mp_proxy **v = owned;
  size_t n = nowned;
  owned = NULL;
  nowned = capowned = 0;
  owned_pid = 0;
  pthread_mutex_unlock(&owned_mu);
  for (size_t i = 0; i < n; i++) {
    unsigned o = me;
    if (atomic_compare_exchange_strong(&v[i]->owner_pid, &o, 0))
      ident_call(v[i]->link, "decref", v[i]->ident);
  }
  free(v);
}

static void
own_track(mp_proxy *p)
{
  uint32_t me = mp__getpid();
  pthread_mutex_lock(&owned_mu);
  if (owned_pid != me) { /* a fork child: the parent's list is not ours */
    owned = NULL;
    nowned = capowned = 0;
    owned_pid = me;
    mp__finalizer_add(MP__FINALIZE_MANAGER + 1, owned_at_exit, NULL);
  }
  if (nowned == capowned) {
    size_t nc = capowned ? capowned * 2 : 16;
    mp_proxy **nv = realloc(owned, nc * sizeof *nv);
    if (nv) {
      owned = nv;
      capowned = nc;
    }
  }
  if (nowned < capowned)
    owned[nowned++] = p;
  pthread_mutex_unlock(&owned_mu);
}

static void
own_untrack(mp_proxy *p)
{
  pthread_mutex_lock(&owned_mu);
  if (owned_pid == mp__getpid())
    for (size_t i = 0; i < nowned; i++)
      if (owned[i] == p) {
        owned[i] = owned[--nowned];
        break;
      }
  pthread_mutex_unlock(&owned_mu);
}

static void
own(mp_proxy *p)
{
  atomic_store(&p->owner_pid, mp__getpid());
  own_track(p);
}

static int
proxy_alloc(mp_proxy **out, mgr_link *l, const char *typeid,
            const char *ident, mp_obj *exposed)
{
  mp_proxy *p = calloc(1, sizeof *p);
  if (!p) {
    link_put(l);
    return MP_ENOMEM;
  }
  atomic_init(&p->refs, 1);
  p->link = l;
  p->typeid = strdup(typeid);
  p->ident = strdup(ident);
  p->exposed = exposed ? mp_obj_ref(exposed) : mp_tuple_take(0);
  if (!p->typeid || !p->ident || !p->exposed) {
    mp_proxy_free(p);
    return MP_ENOMEM;
  }
  *out = p;
  return 0;
}

int
mp__mgr_proxy_new(mp_proxy **out, const char *address, const void *key,
                  size_t keylen, const char *typeid, const char *ident,
                  mp_obj *exposed, int incref)
{
  mgr_link *l = link_get(address, key, keylen);
  if (!l)
    return MP_ENOMEM;
  mp_proxy *p;
  int rc = proxy_alloc(&p, l, typeid, ident, exposed);
  if (rc)
    return rc;
  if (incref && (rc = ident_call(l, "incref", ident))) {
    mp_proxy_free(p);
    return rc;
  }
  own(p);
  *out = p;
  return 0;
}

/* A fork child that inherited a proxy takes its own reference before its
 * first use (Python's BaseProxy._after_fork increfs too). */
static int
own_reference(mp_proxy *p)
{
  uint32_t me = mp__getpid();
  unsigned owner = atomic_load(&p->owner_pid);
  if (p->local || owner == me || owner == 0)
    return 0;
  int rc = ident_call(p->link, "incref", p->ident);
  if (rc)
    return rc;
  if (!atomic_compare_exchange_strong(&p->owner_pid, &owner, me))
    ident_call(p->link, "decref", p->ident); /* another thread was first */
  else
    own_track(p);
  return 0;
}

MP_EXTERN int
mp_proxy_call(mp_proxy *p, const char *method, mp_obj *args, mp_obj *kwds,
              mp_obj **out)
{
  mp__errdetail_clear();
  if (out)
    *out = NULL;
  if (!p || !method)
    return mp_seterr(MP_EINVAL, "mp_proxy_call: NULL argument");
  if (args && mp_obj_type(args) != MP_T_TUPLE)
    return mp_seterr(MP_ETYPE, "mp_proxy_call: args must be a tuple");
  if (kwds && mp_obj_type(kwds) != MP_T_DICT)
    return mp_seterr(MP_ETYPE, "mp_proxy_call: kwds must be a dict");
  int rc = own_reference(p);
  mp_conn *c = NULL;
  if (rc || (rc = link_conn(p->link, &c)))
    return rc;
  mp_obj *req = mp__mgr_request(p->ident, method, args, kwds);
  mp_obj *reply = NULL, *v = NULL;
  if (!req)
    return MP_ENOMEM;
  mp__proxy_wire_on++; /* proxies in the args and reply: RebuildProxy */
  int64_t sent_at = mp__now_ns();
  rc = mp_conn_send(c, req);
  mp_obj_free(req);
  if (rc == MP_ECYCLE || rc == MP_ELIMIT || rc == MP_ENOTSUP ||
      rc == MP_ETYPE) {
    mp__proxy_wire_on--;
    return rc; /* nothing was sent: the connection is fine */
  }
  if (!rc) {
    /* most replies come within microseconds: poll a little before the
     * receive sleeps */
    mp__conn_spin_readable(c, REPLY_SPIN_NS);
    rc = mp_conn_recv(c, &reply, MP_FOREVER);
    mp__conn_note_wait(c, mp__now_ns() - sent_at);
  }
  mp__proxy_wire_on--;
  if (rc && rc != MP_EMALFORMED && rc != MP_ECYCLE && rc != MP_ENOTFOUND &&
      rc != MP_EBADREF) {
    link_drop(p->link, c); /* a broken connection: the next call redials */
    return rc;
  }
  if (rc)
    return rc;
  rc = mp__mgr_reply_read(reply, &v);
  mp_obj_free(reply);
  if (rc == 1) {
    /* #PROXY: (exposed, Token); adopt the reference the server made */
    const char *typeid, *ident;
    mp_obj *tok = mp_seq_item(v, 1);
    mp_proxy *np = NULL;
    rc = mp__mgr_token_parts(tok, &typeid, &ident);
    if (!rc) {
      links_lock();
      p->link->refs++;
      pthread_mutex_unlock(&links_mu);
      rc = proxy_alloc(&np, p->link, typeid, ident, mp_seq_item(v, 0));
    }
    if (!rc) {
      own(np);
      mp_obj *h = mp_proxy_obj(np);
      mp_proxy_free(np);
      rc = h ? 0 : MP_ENOMEM;
      if (out)
        *out = h;
      else
        mp_obj_free(h);
    }
    mp_obj_free(v);
    return rc;
  }
  if (rc) {
    mp_obj_free(v);
    return rc;
  }
  if (out)
    *out = v;
  else
    mp_obj_free(v);
  return 0;
}

MP_EXTERN int
mp_proxy_call_take(mp_proxy *p, const char *method, mp_obj *args,
                   mp_obj **out)
{
  if (!args) {
    if (out)
      *out = NULL;
    return mp_seterr(MP_ENOMEM, "mp_proxy_call_take: NULL args");
  }
  int rc = mp_proxy_call(p, method, args, NULL, out);
  mp_obj_free(args);
  return rc;
}

MP_EXTERN mp_proxy *
mp_proxy_ref(mp_proxy *p)
{
  if (p)
    atomic_fetch_add(&p->refs, 1);
  return p;
}

MP_EXTERN void
mp_proxy_free(mp_proxy *p)
{
  if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
    return;
  if (p->ident) {
    if (p->local)
      mp__mgr_server_decref(p->local, p->ident);
    else if (p->link) {
      unsigned me = mp__getpid();
      own_untrack(p);
      if (atomic_compare_exchange_strong(&p->owner_pid, &me, 0))
        ident_call(p->link, "decref", p->ident); /* a gone server: nothing */
    }
  }
  link_put(p->link);
  free(p->typeid);
  free(p->ident);
  mp_obj_free(p->exposed);
  free(p);
}

MP_EXTERN const char *
mp_proxy_typeid(const mp_proxy *p)
{
  return p ? p->typeid : NULL;
}

MP_EXTERN const char *
mp_proxy_ident(const mp_proxy *p)
{
  return p ? p->ident : NULL;
}

MP_EXTERN mp_obj *
mp_proxy_exposed(const mp_proxy *p)
{
  return p ? p->exposed : NULL;
}

MP_EXTERN int
mp_proxy_getvalue(mp_proxy *p, mp_obj **out)
{
  return mp_proxy_call(p, "#GETVALUE", NULL, NULL, out);
}

MP_EXTERN int
mp_proxy_repr(mp_proxy *p, char **out)
{
  mp_obj *v = NULL;
  *out = NULL;
  int rc = mp_proxy_call(p, "__repr__", NULL, NULL, &v);
  if (rc)
    return rc;
  *out = mp_obj_str(v);
  mp_obj_free(v);
  return *out ? 0 : MP_ENOMEM;
}

/* ---- the handle type "mproc.Proxy" ---------------------------------------- */

static void
proxy_release(void *ptr)
{
  mp_proxy_free(ptr);
}

static int
proxy_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
             void *fdctx)
{
  mp_proxy *p = ptr;
  /* the key crosses only into a child being started, as Python's */
  mp_obj *key = mp_spawning_context()
                    ? mp_bytes_new(p->link->key, p->link->keylen)
                    : mp_none();
  /* A server sending one of its own objects (a nested proxy in a reply)
   * gives the receiver a reference: the value holding it may be gone
   * before the receiver could incref (d.pop() of a proxy). */
  int give = 0;
  if (p->local) {
    int rc = mp__mgr_server_incref(p->local, p->ident);
    if (rc) {
      mp_obj_free(key);
      return rc;
    }
    give = 1;
  }
  *state = MP_TUPLE(mp_str_new(p->link->address), mp_str_new(p->typeid),
                    mp_str_new(p->ident), mp_obj_ref(p->exposed), key,
                    mp_bool_new(give));
  if (!*state && give)
    mp__mgr_server_decref(p->local, p->ident);
  return *state ? 0 : MP_ENOMEM;
}

/* A proxy of an object of the manager at `address` (not served by this
 * process).  With no key: the key of a manager this process already talks
 * to at that address, else the process's authkey (Python's default).
 * `given`: the sender made the reference this proxy owns. */
static int
remote_proxy(mp_proxy **out, const char *address, const void *key,
             size_t keylen, const char *typeid, const char *ident,
             mp_obj *exposed, int given)
{
  if (!key) {
    links_lock();
    for (mgr_link *l = links; l; l = l->next)
      if (!strcmp(l->address, address)) {
        l->refs++;
        pthread_mutex_unlock(&links_mu);
        int rc = proxy_alloc(out, l, typeid, ident, exposed);
        if (rc)
          return rc;
        mp_proxy *p = *out;
        if (!given && (rc = ident_call(l, "incref", ident))) {
          mp_proxy_free(p);
          return rc;
        }
        own(p);
        return 0;
      }
    pthread_mutex_unlock(&links_mu);
    const uint8_t *k;
    int rc = mp_process_authkey(mp_current_process(), &k, &keylen);
    if (rc)
      return rc;
    key = k;
  }
  return mp__mgr_proxy_new(out, address, key, keylen, typeid, ident, exposed,
                           !given);
}

/* A proxy of `ident`, an object of `srv` (this thread serves it), stored
 * in one of its values: it holds a reference in the server itself (nested
 * proxies).  `given`: the sender made that reference. */
static int
local_proxy(mp_proxy **out, mp__mgr_server *srv, const char *typeid,
            const char *ident, mp_obj *exposed, int given)
{
  int rc = given ? 0 : mp__mgr_server_incref(srv, ident);
  if (rc)
    return rc;
  size_t skl;
  const void *sk = mp__mgr_server_key(srv, &skl);
  mgr_link *l = link_get(mp__mgr_server_address(srv), sk, skl);
  mp_proxy *p;
  if (!l || (rc = proxy_alloc(&p, l, typeid, ident, exposed))) {
    if (!l)
      rc = MP_ENOMEM;
    mp__mgr_server_decref(srv, ident);
    return rc;
  }
  p->local = srv;
  *out = p;
  return 0;
}

static int
proxy_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  const char *address, *typeid, *ident;
  const void *key = NULL;
  size_t len, keylen = 0;
  mp_obj *const *it;
  size_t n;
  if (nfds || mp_obj_type(state) != MP_T_TUPLE ||
      mp_seq_items(state, &it, &n) || n != 6 ||
      mp_str_get(it[0], &address, &len) || mp_str_get(it[1], &typeid, &len) ||
      mp_str_get(it[2], &ident, &len) || mp_obj_type(it[3]) != MP_T_TUPLE ||
      (mp_obj_type(it[4]) != MP_T_NONE && mp_bytes_get(it[4], &key, &keylen)))
    return mp_seterr(MP_EMALFORMED, "bad mproc.Proxy state");
  int given = mp_obj_truthy(it[5]);
  mp__mgr_server *srv = mp__mgr_server_current();
  if (srv && !strcmp(address, mp__mgr_server_address(srv)))
    return local_proxy((mp_proxy **)out, srv, typeid, ident, it[3], given);
  return remote_proxy((mp_proxy **)out, address, key, keylen, typeid, ident,
                      it[3], given);
}

static const mp_handle_type proxy_type = {
  .name = "mproc.Proxy",
  .release = proxy_release,
  .reduce = proxy_reduce,
  .rebuild = proxy_rebuild,
};


/* ---- proxies on a manager's wire ------------------------------------------
 * In a manager's requests and replies a proxy travels as CPython writes one
 * (docs/python-wire.md section 4, "Proxies inside values"):
 * RebuildProxy(ProxyClass, Token, 'pickle', kwds), so that a CPython peer
 * in either role stores and returns our proxies, and we theirs; it needs
 * no descriptor, so it works over TCP too.  A server sending one of its own objects holds a
 * reference until the client has made its own (mp__mgr_server_hold). */

#define MM "multiprocessing.managers"

/* The class CPython's SyncManager registers for a typeid; AutoProxy (with
 * the exposed names in kwds) for any other, as for a typeid registered
 * without a proxytype. */
static const char *
proxy_class(const char *typeid)
{
  static const char *const classes[][2] = {
      {"dict", "DictProxy"},          {"list", "ListProxy"},
      {"Namespace", "NamespaceProxy"}, {"Lock", "AcquirerProxy"},
      {"RLock", "AcquirerProxy"},     {"Semaphore", "AcquirerProxy"},
      {"BoundedSemaphore", "AcquirerProxy"},
      {"Condition", "ConditionProxy"}, {"Event", "EventProxy"},
      {"Barrier", "BarrierProxy"},    {"Value", "ValueProxy"},
      {"Array", "ArrayProxy"},        {"Iterator", "IteratorProxy"},
      {"Pool", "PoolProxy"}};
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if (!strcmp(typeid, classes[i][0]))
      return classes[i][1];
  return "AutoProxy";
}

static int
wire_write(void *ptr, mp_obj **value)
{
  mp_proxy *p = ptr;
  const char *cls = proxy_class(p->typeid);
  mp_obj *kwds = mp_dict_new();
  if (kwds && !strcmp(cls, "AutoProxy") &&
      mp_dict_set_take(kwds, mp_str_new("exposed"), mp_obj_ref(p->exposed))) {
    mp_obj_free(kwds);
    kwds = NULL;
  }
  if (!kwds)
    return MP_ENOMEM;
  int rc = p->local ? mp__mgr_server_hold(p->local, p->ident) : 0;
  if (rc) {
    mp_obj_free(kwds);
    return rc;
  }
  /* (a hold left by a failure here goes with the connection's next
   * request) */
  *value = mp_record_take(
      MP_RECORD_REDUCE, mp_global_new(MM, "RebuildProxy"),
      MP_TUPLE(mp_global_new(MM, cls),
               mp__mgr_token_new(p->typeid, p->link->address, p->ident),
               mp_str_new("pickle"), kwds));
  return *value ? 0 : MP_ENOMEM;
}

static int
wire_read(const mp_obj *args, mp_obj **out)
{
  *out = NULL;
  mp_obj *const *it;
  size_t n;
  const char *typeid, *ident;
  mp_obj *state = NULL;
  /* anything but (class, Token, serializer, kwds) stays an inert call */
  if (mp_seq_items(args, &it, &n) || n != 4 ||
      mp__mgr_token_parts(it[1], &typeid, &ident) ||
      mp_record_get(it[1], NULL, NULL, &state, NULL, NULL))
    return 0;
  mp_obj *address = mp_seq_item(state, 1);
  mp_obj *exposed = mp_obj_type(it[3]) == MP_T_DICT
                        ? mp_dict_get_str(it[3], "exposed") : NULL;
  if (exposed && mp_obj_type(exposed) != MP_T_TUPLE &&
      mp_obj_type(exposed) != MP_T_LIST)
    exposed = NULL;
  mp_proxy *p = NULL;
  int rc;
  mp__mgr_server *srv = mp__mgr_server_current();
  if (srv) {
    /* A server takes only proxies of its own objects; another manager's
     * stays inert (a client's bytes never make the server dial out). */
    mp_obj *mine = mp__mgr_address_obj(mp__mgr_server_address(srv));
    int same = mine && mp_obj_equal(mine, address);
    mp_obj_free(mine);
    if (!same)
      return 0;
    rc = local_proxy(&p, srv, typeid, ident, exposed, 0);
  } else {
    char a[512];
    if (mp__mgr_address_str(address, a, sizeof a))
      return mp_seterr(MP_EMALFORMED, "a proxy's Token has an address "
                                      "that is neither a path nor "
                                      "(host, port)");
    rc = remote_proxy(&p, a, NULL, 0, typeid, ident, exposed, 0);
  }
  if (rc)
    return rc;
  *out = mp_proxy_obj(p);
  mp_proxy_free(p);
  return *out ? 0 : MP_ENOMEM;
}

static const mp__proxy_wire proxy_wire = {
  .type = &proxy_type,
  .write = wire_write,
  .read = wire_read,
};

__attribute__((constructor)) static void
proxy_type_init(void)
{
  mp_handle_register(&proxy_type);
  mp__pickle_set_proxy_wire(&proxy_wire);
}

MP_EXTERN mp_obj *
mp_proxy_obj(mp_proxy *p)
{
  if (!p)
    return NULL;
  return mp_handle_new(&proxy_type, mp_proxy_ref(p));
}

MP_EXTERN mp_proxy *
mp_proxy_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &proxy_type);
}

/* A CPython proxy as it arrives in a request: RebuildProxy(func, Token,
 * serializer, kwds), inert.  Its Token's ident if the Token names the
 * server this thread serves, else NULL. */
static const char *
python_proxy_ident(const mp_obj *o, mp__mgr_server *srv)
{
  mp_obj *callable = NULL, *args = NULL, *state = NULL;
  const char *mod, *name, *typeid, *ident;
  if (!srv || mp_obj_type(o) != MP_T_RECORD ||
      mp_record_get(o, &callable, &args, NULL, NULL, NULL) || !callable ||
      mp_global_get(callable, &mod, &name) ||
      strcmp(mod, "multiprocessing.managers") || strcmp(name, "RebuildProxy"))
    return NULL;
  mp_obj *tok = mp_seq_item(args, 1);
  if (mp__mgr_token_parts(tok, &typeid, &ident) ||
      mp_record_get(tok, NULL, NULL, &state, NULL, NULL))
    return NULL;
  mp_obj *mine = mp__mgr_address_obj(mp__mgr_server_address(srv));
  int same = mine && mp_obj_equal(mine, mp_seq_item(state, 1));
  mp_obj_free(mine);
  return same ? ident : NULL;
}

void *
mp__mgr_proxy_local(const mp_obj *o, const mp_manager_type *type, void **pin,
                    mp__mgr_server **srv)
{
  mp_proxy *p = mp_proxy_from_obj(o);
  *pin = NULL;
  if (!p) {
    mp__mgr_server *s = mp__mgr_server_current();
    const char *ident = python_proxy_ident(o, s);
    if (!ident)
      return NULL;
    *srv = s;
    return mp__mgr_server_pin(s, ident, type, pin);
  }
  if (!p->local)
    return NULL;
  *srv = p->local;
  return mp__mgr_server_pin(p->local, p->ident, type, pin);
}

/* ---- typed calls ------------------------------------------------------------ */

static int
call0(mp_proxy *p, const char *m, mp_obj **out)
{
  return mp_proxy_call(p, m, NULL, NULL, out);
}

static int
int_result(int rc, mp_obj *v, int64_t *out)
{
  if (!rc && mp_int_get(v, out))
    rc = mp_seterr(MP_EMALFORMED, "the server replied with a non-int");
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_proxy_getitem(mp_proxy *p, mp_obj *key, mp_obj **out)
{
  return mp_proxy_call_take(p, "__getitem__", MP_TUPLE(mp_obj_ref(key)), out);
}

MP_EXTERN int
mp_proxy_setitem(mp_proxy *p, mp_obj *key, mp_obj *value)
{
  return mp_proxy_call_take(p, "__setitem__",
                            MP_TUPLE(mp_obj_ref(key), mp_obj_ref(value)),
                            NULL);
}

MP_EXTERN int
mp_proxy_delitem(mp_proxy *p, mp_obj *key)
{
  return mp_proxy_call_take(p, "__delitem__", MP_TUPLE(mp_obj_ref(key)),
                            NULL);
}

MP_EXTERN int
mp_proxy_len(mp_proxy *p, int64_t *out)
{
  mp_obj *v = NULL;
  int rc = call0(p, "__len__", &v);
  return int_result(rc, v, out);
}

MP_EXTERN int
mp_proxy_contains(mp_proxy *p, mp_obj *key)
{
  mp_obj *v = NULL;
  int rc = mp_proxy_call_take(p, "__contains__", MP_TUPLE(mp_obj_ref(key)),
                              &v);
  if (!rc)
    rc = mp_obj_truthy(v);
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_proxy_dict_get(mp_proxy *p, mp_obj *key, mp_obj *dflt, mp_obj **out)
{
  return mp_proxy_call_take(
      p, "get", MP_TUPLE(mp_obj_ref(key), dflt ? mp_obj_ref(dflt) : mp_none()),
      out);
}

MP_EXTERN int
mp_proxy_dict_keys(mp_proxy *p, mp_obj **out)
{
  return call0(p, "keys", out);
}

MP_EXTERN int
mp_proxy_dict_values(mp_proxy *p, mp_obj **out)
{
  return call0(p, "values", out);
}

MP_EXTERN int
mp_proxy_dict_items(mp_proxy *p, mp_obj **out)
{
  return call0(p, "items", out);
}

MP_EXTERN int
mp_proxy_list_append(mp_proxy *p, mp_obj *item)
{
  return mp_proxy_call_take(p, "append", MP_TUPLE(mp_obj_ref(item)), NULL);
}

MP_EXTERN int
mp_proxy_list_extend(mp_proxy *p, mp_obj *items)
{
  return mp_proxy_call_take(p, "extend", MP_TUPLE(mp_obj_ref(items)), NULL);
}

MP_EXTERN int
mp_proxy_list_getitem(mp_proxy *p, int64_t i, mp_obj **out)
{
  return mp_proxy_call_take(p, "__getitem__", MP_TUPLE(mp_int_new(i)), out);
}

MP_EXTERN int
mp_proxy_list_setitem(mp_proxy *p, int64_t i, mp_obj *item)
{
  return mp_proxy_call_take(p, "__setitem__",
                            MP_TUPLE(mp_int_new(i), mp_obj_ref(item)), NULL);
}

MP_EXTERN int
mp_proxy_list_reverse(mp_proxy *p)
{
  return call0(p, "reverse", NULL);
}

MP_EXTERN int
mp_proxy_ns_get(mp_proxy *p, const char *name, mp_obj **out)
{
  return mp_proxy_call_take(p, "__getattribute__", MP_TUPLE(mp_str_new(name)),
                            out);
}

MP_EXTERN int
mp_proxy_ns_set(mp_proxy *p, const char *name, mp_obj *value)
{
  return mp_proxy_call_take(p, "__setattr__",
                            MP_TUPLE(mp_str_new(name), mp_obj_ref(value)),
                            NULL);
}

MP_EXTERN int
mp_proxy_ns_del(mp_proxy *p, const char *name)
{
  return mp_proxy_call_take(p, "__delattr__", MP_TUPLE(mp_str_new(name)),
                            NULL);
}

MP_EXTERN int
mp_proxy_value_get(mp_proxy *p, mp_obj **out)
{
  return call0(p, "get", out);
}

MP_EXTERN int
mp_proxy_value_set(mp_proxy *p, mp_obj *value)
{
  return mp_proxy_call_take(p, "set", MP_TUPLE(mp_obj_ref(value)), NULL);
}

/* (block, timeout) arguments by the one timeout rule */
static mp_obj *
block_timeout(mp_obj *first, double timeout)
{
  if (timeout != timeout) {
    mp_obj_free(first);
    return NULL;
  }
  if (timeout <= 0)
    return first ? MP_TUPLE(first, mp_bool_new(0)) : MP_TUPLE(mp_bool_new(0));
  mp_obj *t = timeout == MP_FOREVER ? mp_none() : mp_float_new(timeout);
  return first ? MP_TUPLE(first, mp_bool_new(1), t)
               : MP_TUPLE(mp_bool_new(1), t);
}

MP_EXTERN int
mp_proxy_queue_put(mp_proxy *p, mp_obj *item, double timeout)
{
  if (timeout != timeout)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  return mp_proxy_call_take(p, "put", block_timeout(mp_obj_ref(item), timeout),
                            NULL);
}

MP_EXTERN int
mp_proxy_queue_get(mp_proxy *p, mp_obj **out, double timeout)
{
  if (timeout != timeout)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  return mp_proxy_call_take(p, "get", block_timeout(NULL, timeout), out);
}

MP_EXTERN int
mp_proxy_queue_qsize(mp_proxy *p, int64_t *out)
{
  mp_obj *v = NULL;
  int rc = call0(p, "qsize", &v);
  return int_result(rc, v, out);
}

static int
bool_or_timeout(int rc, mp_obj *v)
{
  if (!rc && !mp_obj_truthy(v))
    rc = MP_ETIMEDOUT;
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_proxy_acquire(mp_proxy *p, double timeout)
{
  if (timeout != timeout)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  mp_obj *args = timeout <= 0 ? MP_TUPLE(mp_bool_new(0))
                 : timeout == MP_FOREVER
                     ? MP_TUPLE(mp_bool_new(1))
                     : MP_TUPLE(mp_bool_new(1), mp_float_new(timeout));
  mp_obj *v = NULL;
  int rc = mp_proxy_call_take(p, "acquire", args, &v);
  return bool_or_timeout(rc, v);
}

MP_EXTERN int
mp_proxy_release(mp_proxy *p)
{
  return call0(p, "release", NULL);
}

MP_EXTERN int
mp_proxy_event_set(mp_proxy *p)
{
  return call0(p, "set", NULL);
}

MP_EXTERN int
mp_proxy_event_clear(mp_proxy *p)
{
  return call0(p, "clear", NULL);
}

MP_EXTERN int
mp_proxy_event_is_set(mp_proxy *p)
{
  mp_obj *v = NULL;
  int rc = call0(p, "is_set", &v);
  if (!rc)
    rc = mp_obj_truthy(v);
  mp_obj_free(v);
  return rc;
}

MP_EXTERN int
mp_proxy_event_wait(mp_proxy *p, double timeout)
{
  if (timeout != timeout)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  mp_obj *t = timeout == MP_FOREVER ? mp_none()
                                    : mp_float_new(timeout < 0 ? 0 : timeout);
  mp_obj *v = NULL;
  int rc = mp_proxy_call_take(p, "wait", MP_TUPLE(t), &v);
  return bool_or_timeout(rc, v);
}
