/* SPDX-License-Identifier: MIT */
/* mproc: Python's multiprocessing, for C.
 *
 * One include for the whole library.  Each part is declared, with its
 * documentation, in its own header under mproc/:
 *   errors.h  error codes, mp_strerror, mp_errdetail
 *   log.h     logging (get_logger / log_to_stderr)
 *   obj.h     mp_obj, the value model (what Python would pickle)
 *   args.h    mp_args_parse: argument tuples into C variables
 *   pickle.h  the pickle codec, byte-compatible with CPython
 *   conn.h    Pipe, Connection, wait, Listener/Client
 *   process.h contexts, start methods, Process
 *   sync.h    Lock, RLock, Semaphore, Condition, Event, Barrier
 *   shm.h     Value/Array, SharedMemory
 *   queue.h   Queue, SimpleQueue, JoinableQueue
 *   pool.h    Pool, ThreadPool, AsyncResult, IMapIterator
 *   manager.h Managers (SyncManager, BaseManager.register) and proxies
 * Conventions (README.md; mechanisms: docs/architecture.md): functions return 0 or a negative
 * code; timeouts are double seconds, <= 0 = do not block, MP_FOREVER = no
 * limit, NaN = MP_EINVAL; what `_new` makes, `_free` releases; `_take` takes ownership. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/version.h"
#include "mproc/errors.h"
#include "mproc/log.h"
#include "mproc/obj.h"
#include "mproc/args.h"
#include "mproc/pickle.h"
#include "mproc/conn.h"
#include "mproc/process.h"
#include "mproc/sync.h"
#include "mproc/shm.h"
#include "mproc/queue.h"
#include "mproc/pool.h"
#include "mproc/manager.h"

#endif
