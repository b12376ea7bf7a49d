/* Process objects, contexts and start methods (stub: being written). */
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

struct mp_context { const char *name; };
struct mp_process { int dummy; };

static mp_context contexts[] = {{"fork"}, {"spawn"}, {"forkserver"}, {"threading"}};
static const char *const all_methods[] = {"fork", "spawn", "forkserver", "threading", NULL};

int mp_get_context(const char *m, mp_context **out) { (void)m; *out = &contexts[0]; return 0; }
const char *mp_context_method(const mp_context *c) { return c ? c->name : "fork"; }
int mp_set_start_method(const char *m, int f) { return 0; }
const char *mp_get_start_method(int a) { return "fork"; }
const char *const *mp_get_all_start_methods(void) { return all_methods; }
int mp_set_executable(const char *p) { return 0; }
int mp_set_forkserver_preload(const char *const *n, size_t k) { return 0; }
mp_context *mp_spawning_context(void) { return NULL; }
int mp_process_new(mp_process **o, mp_context *c, const mp_process_opts *p) { return MP_ENOTSUP; }
mp_process *mp_process_ref(mp_process *p) { return p; }
void mp_process_free(mp_process *p) {}
int mp_process_start(mp_process *p) { return MP_ENOTSUP; }
int mp_process_join(mp_process *p, double t) { return MP_ENOTSUP; }
int mp_process_is_alive(mp_process *p) { return MP_ENOTSUP; }
int mp_process_terminate(mp_process *p) { return MP_ENOTSUP; }
int mp_process_kill(mp_process *p) { return MP_ENOTSUP; }
int mp_process_close(mp_process *p) { return MP_ENOTSUP; }
int mp_process_pid(mp_process *p) { return MP_ENOTSUP; }
int mp_process_exitcode(mp_process *p, int *c) { return MP_ENOTSUP; }
const char *mp_process_name(mp_process *p) { return "MainProcess"; }
int mp_process_set_name(mp_process *p, const char *n) { return MP_ENOTSUP; }
int mp_process_daemon(mp_process *p) { return 0; }
int mp_process_set_daemon(mp_process *p, int d) { return MP_ENOTSUP; }
int mp_process_sentinel(mp_process *p) { return MP_ENOTSUP; }
int mp_process_authkey(mp_process *p, const uint8_t **k, size_t *l) { return MP_ENOTSUP; }
int mp_process_set_authkey(mp_process *p, const void *k, size_t l) { return MP_ENOTSUP; }
mp_context *mp_process_context(mp_process *p) { return NULL; }
int mp_process_repr(mp_process *p, char *b, size_t c) { return MP_ENOTSUP; }
mp_process *mp_current_process(void) { return NULL; }
mp_process *mp_parent_process(void) { return NULL; }
int mp_active_children(mp_process ***l, size_t *n) { *l = NULL; *n = 0; return 0; }
void mp_process_list_free(mp_process **l, size_t n) {}
int mp_cpu_count(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }
int mp_cpu_count_usable(void) { return mp_cpu_count(); }
void mp_exit(int code) { exit(code); }
int mp_main(int argc, char **argv) { return 0; }
