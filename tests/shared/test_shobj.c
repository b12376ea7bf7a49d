/* SPDX-License-Identifier: MIT */
/* The shared-object base (src/shared): handles' references, the object a
 * handle holds (a Condition's lock, a Value's lock), and the arena's fork
 * hook (a fork child allocates from slabs of its own). */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_internal.h"

/* Slabs in use: the one an arena keeps for reuse released first. */
static size_t
slabs_now(void)
{
  size_t n;
  mp__arena_trim();
  mp__arena_stats(&n, NULL);
  return n;
}

static uint64_t
arena_of(const struct mp__shobj *h)
{
  mp__arena_loc loc;
  int fd;
  mp__arena_export(h->ref, &loc, &fd);
  return loc.arena_id;
}

/* A Condition holds its own reference to its lock: the lock lives until
 * both are freed, and then the slab goes. */
static void
test_held_lock_lives_with_its_holder(void **state)
{
  size_t slabs0 = slabs_now();
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, l));
  assert_ptr_equal(mp_cond_lock(c), l);
  mp_lock_free(l);
  MP_ASSERT_OK(mp_cond_acquire(c, 0));
  assert_true(mp_lock_locked(mp_cond_lock(c)));
  MP_ASSERT_OK(mp_cond_notify_all(c));
  MP_ASSERT_OK(mp_cond_release(c));
  /* a handle value holds a reference too */
  mp_obj *o = mp_cond_obj(c);
  assert_non_null(o);
  mp_cond_free(c);
  assert_non_null(mp_cond_from_obj(o));
  assert_true(slabs_now() > slabs0);
  mp_obj_free(o);
  assert_int_equal(slabs_now(), slabs0);

  /* a synchronized Value's own RLock, and one given to it */
  mp_value *v;
  MP_ASSERT_OK(mp_value_new(&v, 'i', NULL, NULL));
  MP_ASSERT_OK(mp_lock_new(&l));
  mp_value *w;
  MP_ASSERT_OK(mp_value_new(&w, 'i', NULL, &(mp_value_opts){.lock = l}));
  mp_lock_free(l);
  assert_ptr_equal(mp_value_get_lock(w), l);
  MP_ASSERT_OK(mp_value_set_int(w, 7));
  assert_true(mp_lock_is_recursive(mp_value_get_lock(v)));
  mp_value_free(v);
  mp_value_free(w);
  assert_int_equal(slabs_now(), slabs0);
}

/* A constructor that fails takes what it was given with it, and leaves
 * nothing behind. */
static void
test_failed_new_drops_what_it_took(void **state)
{
  size_t slabs0 = slabs_now();
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_ERR(mp_cond_new(NULL, l), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new(NULL, 'i', NULL, &(mp_value_opts){.lock = l}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_array_new(NULL, 'i', 4, NULL,
                             &(mp_value_opts){.lock = l}),
                MP_EINVAL);
  /* the caller's reference is still the only one */
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  MP_ASSERT_OK(mp_lock_release(l));
  mp_lock_free(l);
  MP_ASSERT_ERR(mp_sem_new(NULL, 1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_event_new(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_barrier_new(NULL, 2, NULL), MP_EINVAL);
  mp_sem *s = (mp_sem *)(uintptr_t)1; /* must be reset */
  MP_ASSERT_ERR(mp_sem_new(&s, -1, NULL), MP_EINVAL);
  assert_null(s);
  assert_null(mp_lock_obj(NULL));
  mp_lock_free(NULL);
  assert_int_equal(slabs_now(), slabs0);
}

/* After fork the child keeps using its parent's objects but makes new ones
 * in an arena of its own (the arena's fork hook, run by the lifecycle
 * registry), so the two never allocate from one slab. */
static void
test_fork_child_allocates_its_own(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  mp_value *v;
  MP_ASSERT_OK(mp_value_new(&v, 'q', NULL, &(mp_value_opts){.lock = l}));
  uint64_t parent_arena = arena_of(&l->h);
  pid_t pid = fork();
  if (pid == 0) {
    int rc = 0;
    mp_lock *m = NULL;
    if (mp_value_set_int(v, 42) /* takes l */
        || mp_lock_acquire(l, 0) || mp_lock_release(l))
      rc = 1;
    else if (mp_lock_new(&m))
      rc = 2;
    else if (arena_of(&m->h) == parent_arena)
      rc = 3;
    mp_lock_free(m);
    _exit(rc);
  }
  assert_true(pid > 0);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  int64_t x;
  MP_ASSERT_OK(mp_value_get_int(v, &x));
  assert_int_equal(x, 42);
  /* the parent still allocates where it did */
  mp_lock *n;
  MP_ASSERT_OK(mp_lock_new(&n));
  assert_true(arena_of(&n->h) == parent_arena);
  mp_lock_free(n);
  mp_value_free(v);
  mp_lock_free(l);
}

static size_t
slabs_mapped(void)
{
  size_t n;
  mp__arena_stats(&n, NULL);
  return n;
}

/* The slab that held a process's last objects is kept for its next ones (a
 * pool's objects come and go with it: a new slab each time cost a memfd, a
 * map, an unmap and a close), one at most; mp__arena_trim releases it, and
 * a child forked while one is kept releases its copy. */
static void
test_empty_slab_kept_for_reuse(void **state)
{
  mp__arena_trim();
  int fds0 = mp_test_count_fds();
  assert_int_equal(slabs_mapped(), 0);
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  uint64_t arena = arena_of(&l->h);
  mp_lock_free(l);
  assert_int_equal(slabs_mapped(), 1);
  assert_int_equal(mp_test_count_fds(), fds0 + 1);
  /* the next object comes from it: no new slab, no new fd */
  MP_ASSERT_OK(mp_lock_new(&l));
  assert_true(arena_of(&l->h) == arena);
  assert_int_equal(slabs_mapped(), 1);
  assert_int_equal(mp_test_count_fds(), fds0 + 1);
  mp_lock_free(l);
  pid_t pid = fork();
  if (pid == 0)
    _exit(slabs_mapped() == 0 && mp_test_count_fds() == fds0 ? 0 : 1);
  assert_true(pid > 0);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  mp__arena_trim();
  assert_int_equal(slabs_mapped(), 0);
  assert_int_equal(mp_test_count_fds(), fds0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_held_lock_lives_with_its_holder),
    cmocka_unit_test(test_empty_slab_kept_for_reuse),
    cmocka_unit_test(test_failed_new_drops_what_it_took),
    cmocka_unit_test(test_fork_child_allocates_its_own),
};

MP_TEST_MAIN(tests)
