/* SPDX-License-Identifier: MIT */
/* The order of things at exit, as Python's util._exit_function: the
 * lifecycle finalizers of priority >= 0 first (a later layer's: a pool, a
 * manager), while the children still run; then the daemon children are
 * terminated and the others joined (MP__FINALIZE_CHILDREN); then the
 * finalizers below that, the forkserver's stop (MP__FINALIZE_LAST) last.
 * Checked where a program exits (exit(), from main) and where a child
 * process ends (its target returns), with children of every method. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "proc/proc_internal.h"
#include "testutil.h"

#define NKIDS 4
#define WAIT_GO 10.0 /* a child given no "go" gives up (a wrong order) */

struct world {
  mp_conn *out;          /* the test's channel: one letter per step */
  mp_process *kids[NKIDS];
  mp_conn *go[NKIDS];    /* releases kid i */
  int nkids;
};

static void
say(struct world *w, char c)
{
  mp_conn_send_bytes(w->out, &c, 1);
}

/* args: (go,) -- waits for its "go", then ends with 0 (3 without one). */
static int
t_wait_go(mp_obj *args)
{
  mp_conn *go = mp_conn_from_obj(mp_seq_item(args, 0));
  void *buf;
  size_t len;
  if (mp_conn_recv_bytes(go, &buf, &len, 0, WAIT_GO) != 0)
    return 3;
  mp_free(buf);
  return 0;
}

/* Priority 0: every child still runs ('A'; 'a' if not); then each is let
 * go, so that the join that follows ends. */
static void
fin_children_alive(void *arg)
{
  struct world *w = arg;
  int alive = 1;
  for (int i = 0; i < w->nkids; i++)
    alive &= mp_process_is_alive(w->kids[i]) == 1;
  say(w, alive ? 'A' : 'a');
  for (int i = 0; i < w->nkids; i++)
    mp_conn_send_bytes(w->go[i], "go", 2);
}

/* Priority 0, registered later: runs first among equals. */
static void
fin_later(void *arg)
{
  say(arg, 'L');
}

/* Between the children and the last: every child was joined, with the
 * exit code of a child that got its "go" ('J'), and the forkserver of a
 * forkserver child still runs ('S'). */
static void
fin_after_join(void *arg)
{
  struct world *w = arg;
  int joined = 1;
  for (int i = 0; i < w->nkids; i++) {
    int code = -1;
    joined &= mp_process_is_alive(w->kids[i]) == 0 &&
              mp_process_exitcode(w->kids[i], &code) == 0 && code == 0;
  }
  say(w, joined ? 'J' : 'j');
  say(w, mp__forkserver_pid() > 0 ? 'S' : 's');
}

/* The last of all: the forkserver was stopped just before ('E': no
 * server). */
static void
fin_end(void *arg)
{
  struct world *w = arg;
  say(w, mp__forkserver_pid() == 0 ? 'E' : 'e');
}

/* Register the finalizers around starting a child of each method in
 * `methods`; the caller then exits.  The first finalizer is registered
 * before any child exists (so before the registry's own). */
static int
build_world(struct world *w, const char *const *methods)
{
  if (!mp__finalizer_add(MP__FINALIZE_LAST - 1, fin_end, w) ||
      !mp__finalizer_add(0, fin_children_alive, w) ||
      !mp__finalizer_add(MP__FINALIZE_CHILDREN - 1, fin_after_join, w))
    return MP_ENOMEM;
  for (int i = 0; methods[i]; i++) {
    mp_context *ctx;
    mp_conn *r;
    int rc = mp_get_context(methods[i], &ctx);
    if (!rc)
      rc = mp_pipe(&r, &w->go[i], 0);
    if (rc)
      return rc;
    mp_obj *args = MP_TUPLE(mp_conn_obj(r));
    rc = mp_process_new(&w->kids[i], ctx,
                        &(mp_process_opts){.target = t_wait_go,
                                           .args = args});
    mp_obj_free(args);
    if (!rc)
      rc = mp_process_start(w->kids[i]);
    mp_conn_free(r);
    if (rc)
      return rc;
    w->nkids++;
  }
  return mp__finalizer_add(0, fin_later, w) ? 0 : MP_ENOMEM;
}

static const char *const all4[] = {"fork", "spawn", "forkserver",
                                   "threading", NULL};
static const char *const fork_thread[] = {"fork", "threading", NULL};

/* What the test channel carried until its end. */
static void
read_story(mp_conn *in, char *story, size_t cap)
{
  size_t n = 0;
  void *buf;
  size_t len;
  while (n + 1 < cap && mp_conn_recv_bytes(in, &buf, &len, 0, 30.0) == 0) {
    if (len == 1)
      story[n++] = *(char *)buf;
    mp_free(buf);
  }
  story[n] = '\0';
}

/* A program that returns from main (exit()) with children of every
 * method running. */
static void
test_program_exit(void **state)
{
  (void)state;
  mp_conn *in, *out;
  mp_test_pipe(&in, &out, 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    mp_conn_free(in);
    static struct world w;
    w.out = out;
    int rc = build_world(&w, all4);
    if (rc) {
      fprintf(stderr, "build_world: %s\n", mp_errdetail());
      _exit(2);
    }
    exit(0);
  }
  assert_true(pid > 0);
  mp_conn_free(out);
  char story[32];
  read_story(in, story, sizeof story);
  mp_conn_free(in);
  assert_int_equal(mp_test_wait_child(pid, 60), 0);
  /* later priority-0 first; children alive then; joined; the forkserver
   * stopped last */
  assert_string_equal(story, "LAJSE");
}

/* args: (out,): the body of a child process that ends by returning. */
static int
t_child_world(mp_obj *args)
{
  static struct world w;
  w.out = mp_conn_ref(mp_conn_from_obj(mp_seq_item(args, 0)));
  return build_world(&w, fork_thread) ? 2 : 0;
}

/* A child process (of each method) whose target returns with children of
 * its own running. */
static void
test_child_exit(void **state)
{
  mp_conn *in, *out;
  mp_test_pipe(&in, &out, 0);
  mp_obj *args = MP_TUPLE(mp_conn_obj(out));
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){.target = t_child_world,
                                                 .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  mp_conn_free(out);
  char story[32];
  read_story(in, story, sizeof story);
  mp_conn_free(in);
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  /* no forkserver of its own: 's' after the join, and none at the end */
  assert_string_equal(story, "LAJsE");
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_program_exit),
    MP_TEST_METHODS(test_child_exit),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
