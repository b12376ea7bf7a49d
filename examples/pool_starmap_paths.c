/* SPDX-License-Identifier: MIT */
/* mpire's start-method example (the seeds' "Spawn and forkserver"): a job
 * over (folder, filename) pairs, each pair unpacked into the job's
 * arguments -- Pool.starmap:
 *
 *   def working_job(folder, filename):
 *       import os
 *       return os.path.join(folder, filename)
 *
 *   with WorkerPool(n_jobs=2, start_method='spawn') as pool:
 *       pool.map(working_job, [('folder', '0.p3'), ('folder', '1.p3')])
 *
 * The seed's lesson holds in C in another form: under spawn and forkserver
 * a worker is a fresh run of the program, so a global the parent set is
 * back at its initial value there (`separator` below is one); what a job
 * needs travels in its arguments.
 *
 * Usage: pool_starmap_paths [fork|spawn|forkserver|threading]  (default:
 * spawn) */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static const char *separator = "/"; /* constant: the same in every worker */

static int
working_job(mp_obj *args, mp_obj **result)
{
  const char *folder, *filename;
  if (mp_args_parse(args, "ss:working_job", &folder, &filename))
    return MP_EINVAL;
  *result = mp_str_printf("%s%s%s", folder, separator, filename);
  return *result ? 0 : MP_ENOMEM;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  mp_pool *pool = NULL;
  mp_obj *out = NULL;
  int rc = mp_get_context(argc > 1 ? argv[1] : "spawn", &ctx);
  if (!rc)
    rc = mp_pool_new(&pool, &(mp_pool_opts){.processes = 2, .context = ctx});
  if (!rc) {
    mp_obj *jobs = MP_LIST(MP_TUPLE(mp_str_new("folder"), mp_str_new("0.p3")),
                           MP_TUPLE(mp_str_new("folder"), mp_str_new("1.p3")));
    rc = mp_pool_starmap(pool, working_job, jobs, NULL, &out);
    mp_obj_free(jobs);
  }
  if (!rc) {
    mp_obj_print(out, stdout);
    mp_obj_free(out);
  }
  if (rc)
    fprintf(stderr, "pool_starmap_paths: %s: %s\n", mp_strerror(rc),
            mp_errdetail());
  mp_pool_free(pool);
  return rc ? 1 : 0;
}
