/* SPDX-License-Identifier: MIT */
/* Handle types of the sync primitives: how they cross to other processes.
 *
 * A primitive is reduced to the location of its block in the arena plus
 * the fd of its slab, and what its type adds; the receiver maps the slab
 * (once per process) and makes a new handle to the same shared block.  The
 * shared-object base (shared/shobj.c) does this alike for every type and
 * checks what a hostile peer could send; each type (in its own file) says
 * what its state holds besides the location and checks its own header. */
#include "mproc/args.h"
#include "mproc/sync.h"
#include "sync/sync_internal.h"

/* {RLock} in mp_args_parse: a kind of mproc.Lock (one handle type serves
 * both kinds of lock). */
static int
is_rlock(const void *ptr)
{
  return mp_lock_is_recursive(ptr);
}

static const mp_arg_kind rlock_kind = {"RLock", "mproc.Lock", is_rlock};

__attribute__((constructor)) static void
register_types(void)
{
  mp_arg_kind_register(&rlock_kind);
  mp_handle_register(&mp__lock_type.handle);
  mp_handle_register(&mp__sem_type.handle);
  mp_handle_register(&mp__event_type.handle);
  mp_handle_register(&mp__cond_type.handle);
  mp_handle_register(&mp__barrier_type.handle);
}

MP__SHOBJ_PUBLIC(mp_lock, mp_lock, mp__lock_type)
MP__SHOBJ_PUBLIC(mp_sem, mp_sem, mp__sem_type)
MP__SHOBJ_PUBLIC(mp_event, mp_event, mp__event_type)
MP__SHOBJ_PUBLIC(mp_cond, mp_cond, mp__cond_type)
MP__SHOBJ_PUBLIC(mp_barrier, mp_barrier, mp__barrier_type)
