/* SPDX-License-Identifier: MIT */
/* libmproc-mpi: the Pool on MPI -- its workers are the ranks of an MPI job
 * (Open MPI, MPICH), on any number of hosts.  An optional library of its
 * own (pkg-config mproc-mpi, CMake target mproc::mproc_mpi); libmproc does
 * not depend on it.  See docs/mpi.md.
 *
 * Launch: `mpirun -n N ./prog`.  A program linked with libmproc-mpi is
 * taken over on ranks 1..N-1 before main() (by the library's constructor,
 * which runs before the program's own constructors): those ranks never run
 * main and serve the MPI pools of rank 0 until rank 0 exits (or mpirun
 * ends, which ends them).  Rank 0 runs main.  The library initializes MPI
 * (MPI_THREAD_SERIALIZED) before main and finalizes it at exit: the program
 * must not call MPI_Init or MPI_Finalize (MPI_Initialized says 1); it may
 * use MPI_COMM_WORLD itself on rank 0 (the pool talks on a duplicate of it
 * and serializes its calls with mp_mpi_lock).  Run without mpirun, the
 * program is a singleton of one rank: mp_mpi_pool_new says MP_ESTATE.
 *
 * The pool (mp_mpi_pool_new) is a Pool made with a remote executor
 * (pool.h's mp_pool_executor): every call of pool.h works on it -- apply,
 * map, starmap, imap, imap_unordered (and the iterator-fed ones), the async
 * forms and their callbacks, chunksize, get's timeouts, task_timeout,
 * progress, insights, map_array.  Tasks, apply's args and map's items, and
 * results are data values pickled into MPI messages; the task function
 * (and map_array's element function) crosses as a function reference,
 * resolved against the same binary on every rank: a rank running another
 * build refuses the task with MP_EBADREF.  A handle (a queue, a lock, a
 * segment...) in the arguments is MP_ENOTSUP, as is one in a result.
 *
 * Guarantees beside the local pool's (pool.h): a task's error code and
 * text come back as on a local pool (the text prefixed with
 * "MPIPoolWorker-R", R the rank).  A task past its task_timeout is
 * MP_ETIMEDOUT, but its rank is not stopped (MPI cannot stop one rank): it
 * runs the task to its end, its result is dropped, and the jobs sent to
 * that rank meanwhile wait behind it.  A rank that dies (a signal, exit()
 * in a task) ends the whole job: Open MPI without ULFM aborts every rank,
 * rank 0 included, and mpirun exits non-zero naming the rank; there is no
 * MP_EWORKERDIED and no replacement.  Nothing waits forever. */
#ifndef MPROC_MPI_H
#define MPROC_MPI_H

#include "mproc/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* This process's rank in MPI_COMM_WORLD, and the number of ranks (1 and 0
 * when not launched by mpirun). */
MP_EXTERN int mp_mpi_rank(void);
MP_EXTERN int mp_mpi_size(void);

typedef struct mp_mpi_opts {
  /* Jobs in flight per rank: the pool keeps this many jobs (chunks) sent
   * to each rank, so a rank finds its next job waiting when it finishes
   * one.  0: 2. */
  int inflight;
} mp_mpi_opts;

/* A pool whose workers are ranks 1..processes of this MPI job
 * (opts->processes 0: every rank but 0).  Only on rank 0.  opts may be
 * NULL; of mp_pool_opts, `processes` and `insights` apply (insights are
 * per worker thread of rank 0: inflight of them per rank); the others
 * (initializer, maxtasksperchild, worker_exit, worker_state, shared,
 * cpu_ids, context) are MP_ENOTSUP: they would run on rank 0's threads,
 * not on the ranks.  0 and *out (free with mp_pool_free, as any pool);
 * MP_ESTATE (not under mpirun, fewer than 2 ranks, not rank 0, or MPI
 * already finalized); MP_EINVAL (out NULL, processes above size - 1 or
 * negative, inflight negative); MP_ENOTSUP; what mp_pool_new returns. */
MP_EXTERN int mp_mpi_pool_new(mp_pool **out, const mp_pool_opts *opts,
                              const mp_mpi_opts *mopts);

/* The library's lock around its MPI calls on rank 0 (it asks for
 * MPI_THREAD_SERIALIZED): hold it around your own MPI calls on rank 0
 * while an MPI pool is alive. */
MP_EXTERN void mp_mpi_lock(void);
MP_EXTERN void mp_mpi_unlock(void);

#ifdef __cplusplus
}
#endif
#endif
