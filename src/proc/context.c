/* SPDX-License-Identifier: MIT */
/* Contexts and start-method selection: get_context, set_start_method,
 * get_start_method, get_all_start_methods; the table of the start methods
 * (each method's file defines its mp__start_ops); and the layer's fork
 * hooks, registered once with the lifecycle registry. */
#include <pthread.h>
#include <string.h>

#include "proc/proc_internal.h"
#include "platform/platform.h"

mp_context mp__contexts[MP__M_COUNT] = {
    {MP__M_FORK, &mp__fork_ops},
    {MP__M_SPAWN, &mp__spawn_ops},
    {MP__M_FORKSERVER, &mp__forkserver_ops},
    {MP__M_THREADING, &mp__thread_ops},
};
mp_context mp__default_context = {-1, NULL};
static const char *const all_methods[] = {"fork", "spawn", "forkserver",
                                          "threading", NULL};

/* Reset in fork children (context_after_fork). */
static pthread_mutex_t method_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static int g_default_method = -1; /* unfixed */
static _Thread_local mp_context *tls_spawning;

/* ---- the layer's fork hooks --------------------------------------------- */

static void
context_after_fork(void *arg)
{
  (void)arg;
  /* Only the forking thread exists in the child: a lock another thread
   * held is made anew.  (Each write here copies a page in every fork
   * child: only what is not already as it should be.) */
  mp__mutex_reset(&method_lock);
  if (tls_spawning)
    tls_spawning = NULL;
}

static void
method_after_fork(void *arg)
{
  ((const mp__start_ops *)arg)->after_fork_child();
}

static void
exitcode_after_fork(void *arg)
{
  (void)arg;
  mp__exit_after_fork_child();
}

static void
init_once(void)
{
  /* Registration order is the order the child hooks run in; none of these
   * depends on another.  Out of memory here leaves a fork child with its
   * parent's state, as before the registry: nothing better to do. */
  mp__fork_hook_add(NULL, NULL, context_after_fork, NULL);
  mp__proc_children_init();
  mp__fork_hook_add(NULL, NULL, exitcode_after_fork, NULL);
  for (int i = 0; i < MP__M_COUNT; i++)
    if (mp__contexts[i].ops->after_fork_child)
      mp__fork_hook_add(NULL, NULL, method_after_fork,
                        (void *)mp__contexts[i].ops);
}

void
mp__proc_init(void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_once);
}

/* ---- contexts --------------------------------------------------------- */

static int
method_index(const char *name)
{
  for (int i = 0; i < MP__M_COUNT; i++)
    if (strcmp(name, mp__contexts[i].ops->name) == 0)
      return i;
  return -1;
}

int
mp_get_context(const char *method, mp_context **out)
{
  mp__errdetail_clear();
  if (!out)
    return MP_EINVAL;
  if (!method) {
    *out = &mp__default_context;
    return 0;
  }
  int i = method_index(method);
  if (i < 0)
    return mp_seterr(MP_EINVAL, "cannot find context for '%s'", method);
  *out = &mp__contexts[i];
  return 0;
}

int
mp__proc_default_method(void)
{
  mp__proc_init();
  pthread_mutex_lock(&method_lock);
  if (g_default_method < 0)
    g_default_method = MP__M_FORK;
  int m = g_default_method;
  pthread_mutex_unlock(&method_lock);
  return m;
}

int
mp__proc_default_method_now(void)
{
  mp__proc_init();
  pthread_mutex_lock(&method_lock);
  int m = g_default_method;
  pthread_mutex_unlock(&method_lock);
  return m;
}

void
mp__proc_set_default_method(int method)
{
  pthread_mutex_lock(&method_lock);
  g_default_method = method >= 0 && method < MP__M_COUNT ? method : -1;
  pthread_mutex_unlock(&method_lock);
}

int
mp__proc_resolve_method(const mp_process *p)
{
  return p->ctx ? p->ctx->method : mp__proc_default_method();
}

const char *
mp_context_method(const mp_context *ctx)
{
  if (!ctx || ctx->method < 0)
    return mp__contexts[mp__proc_default_method()].ops->name;
  return ctx->ops->name;
}

int
mp_set_start_method(const char *method, int force)
{
  mp__errdetail_clear();
  int i = -1;
  if (method && (i = method_index(method)) < 0)
    return mp_seterr(MP_EINVAL, "cannot find context for '%s'", method);
  mp__proc_init();
  pthread_mutex_lock(&method_lock);
  int rc = 0;
  if (g_default_method >= 0 && !force)
    rc = mp_seterr(MP_ESTATE, "context has already been set");
  else if (method || force)
    g_default_method = i;
  pthread_mutex_unlock(&method_lock);
  return rc;
}

const char *
mp_get_start_method(int allow_none)
{
  int m = mp__proc_default_method_now();
  if (m < 0) {
    if (allow_none)
      return NULL;
    m = mp__proc_default_method();
  }
  return mp__contexts[m].ops->name;
}

const char *const *
mp_get_all_start_methods(void)
{
  return all_methods;
}

mp_context *
mp_spawning_context(void)
{
  return tls_spawning;
}

void
mp__proc_set_spawning(mp_context *ctx)
{
  tls_spawning = ctx;
}
