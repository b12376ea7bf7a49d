/* SPDX-License-Identifier: MIT */
/* Function (and data) references that survive exec: (object file, offset
 * from its load base, build-id).  The receiver resolves them against its own
 * load bases -- loading a shared object it does not have yet when the
 * sender is trusted -- and refuses a file of another build, or an offset
 * where no function starts, rather than produce a wrong address (see
 * core/internal.h). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/internal.h"
#include "platform/platform.h"

/* For objects linked without a build-id: an identity from the file. */
static _Thread_local int trusted;

void
mp__funcref_trust(int on)
{
  trusted = on != 0;
}

/* The last references this thread encoded and decoded.  A pool's handler
 * encodes the same task function for every job and each worker decodes it
 * as often; the lookups behind one (the loaded objects' headers and
 * build-ids, the symbol tables) cost about 0.3 and 0.7 us, the loader's
 * counts of loads and unloads (mp__plat_objects_gen) 0.05.  An entry holds
 * while those counts have not moved, for the same bytes; objects without
 * a build-id, known by their file's identity, are looked up every time,
 * and so are a trusted sender's (a child's instructions, read once). */
#define MEMO_N 4
#define MEMO_BYTES 176
typedef struct ref_memo {
  uint64_t gen; /* 0: empty */
  const void *addr;
  int exec; /* encode */
  uint32_t len;
  uint8_t bytes[MEMO_BYTES];
} ref_memo;
static _Thread_local ref_memo enc_memo[MEMO_N], dec_memo[MEMO_N];
static _Thread_local unsigned enc_next, dec_next;

static ref_memo *
memo_slot(ref_memo *m, unsigned *next)
{
  ref_memo *e = &m[*next % MEMO_N];
  (*next)++;
  return e;
}

/* dlopen `path` for a reference, when this thread may load objects. */
static int
load_object(const char *path, char *err, size_t errcap)
{
  if (!trusted) {
    snprintf(err, errcap,
             "%s is not loaded in this process (a reference received from a "
             "peer never loads an object)", path);
    return MP_EBADREF;
  }
  if (!dlopen(path, RTLD_NOW)) {
    const char *e = dlerror();
    snprintf(err, errcap, "cannot load %s: %s", path, e ? e : "?");
    return MP_EBADREF;
  }
  return 0;
}

static int
stat_id(const char *path, uint8_t *id, size_t *idlen)
{
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  uint64_t v[4] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino,
                   (uint64_t)st.st_size,
                   (uint64_t)st.st_mtim.tv_sec * 1000000000u +
                       (uint64_t)st.st_mtim.tv_nsec};
  memcpy(id, v, sizeof v);
  *idlen = sizeof v;
  return 0;
}

int
mp__funcref_encode(const void *addr, int exec, mp__buf *b)
{
  uint64_t gen = mp__plat_objects_gen();
  for (int i = 0; gen && i < MEMO_N; i++)
    if (enc_memo[i].gen == gen && enc_memo[i].addr == addr &&
        enc_memo[i].exec == exec)
      return mp__buf_append(b, enc_memo[i].bytes, enc_memo[i].len)
                 ? MP_ENOMEM
                 : 0;
  size_t start = b->len;
  static _Thread_local mp__plat_object o; /* 4 KiB: keep it off the stack */
  if (mp__plat_object_of(addr, &o) != 0)
    return mp_seterr(MP_EBADREF, "address %p is not in a loaded object", addr);
  uint8_t id[64];
  size_t idlen = o.idlen;
  uint32_t has_build_id = idlen > 0;
  if (idlen)
    memcpy(id, o.id, idlen);
  else if (stat_id(o.is_main ? "/proc/self/exe" : o.name, id, &idlen) != 0)
    return mp_seterr(MP_EBADREF, "%s has no build-id and cannot be identified",
                     o.is_main ? "the executable" : o.name);
  int rc = mp__put_u32(b, (uint32_t)o.is_main);
  if (!rc)
    rc = mp__put_blob(b, o.name, strlen(o.name));
  if (!rc)
    rc = mp__put_u64(b, (uint64_t)((uintptr_t)addr - o.base));
  if (!rc)
    rc = mp__put_blob(b, id, idlen);
  if (!rc)
    rc = mp__put_u32(b, has_build_id);
  if (!rc)
    rc = mp__put_u32(b, (uint32_t)exec);
  if (!rc && gen && has_build_id && b->len - start <= MEMO_BYTES) {
    ref_memo *e = memo_slot(enc_memo, &enc_next);
    e->gen = gen;
    e->addr = addr;
    e->exec = exec;
    e->len = (uint32_t)(b->len - start);
    memcpy(e->bytes, b->data + start, e->len);
  }
  return rc;
}

static void
hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
  size_t k = 0;
  for (size_t i = 0; i < n && k + 3 <= cap; i++)
    k += (size_t)snprintf(out + k, cap - k, "%02x", p[i]);
  if (cap)
    out[k < cap ? k : cap - 1] = '\0';
}

static int
decode(const uint8_t **p, const uint8_t *end, void **addr, char *err,
       size_t errcap, int code_only)
{
  uint32_t is_main, namelen, idlen, has_build_id, exec;
  const uint8_t *name, *id, *start = *p;
  uint64_t off;
  if (mp__get_u32(p, end, &is_main) || mp__get_blob(p, end, &name, &namelen) ||
      mp__get_u64(p, end, &off) || mp__get_blob(p, end, &id, &idlen) ||
      mp__get_u32(p, end, &has_build_id) || mp__get_u32(p, end, &exec) ||
      idlen > 64 || namelen >= 4096 || is_main > 1 || has_build_id > 1 ||
      exec > 1) {
    snprintf(err, errcap, "malformed function reference");
    return MP_EMALFORMED;
  }
  if (code_only && !exec) {
    snprintf(err, errcap, "a data reference where a function was expected");
    return MP_EBADREF;
  }
  size_t span = (size_t)(*p - start);
  /* A trusted decode is a child's one look at its instructions: nothing
   * to remember (and its write would be one more page copied after the
   * fork).  Remembered bytes passed every check below once already. */
  uint64_t gen = has_build_id && !trusted ? mp__plat_objects_gen() : 0;
  for (int i = 0; gen && i < MEMO_N; i++)
    if (dec_memo[i].gen == gen && dec_memo[i].len == span &&
        memcmp(dec_memo[i].bytes, start, span) == 0) {
      *addr = (void *)dec_memo[i].addr;
      return 0;
    }
  char path[4096];
  memcpy(path, name, namelen);
  path[namelen] = '\0';
  const char *what = is_main ? "the executable" : path;
  uintptr_t base = 0;
  uint8_t mine[64];
  size_t minelen = 0;
  int rc;
  if (memchr(path, 0, namelen) || (is_main && namelen)) {
    snprintf(err, errcap, "malformed function reference");
    return MP_EMALFORMED;
  }
  if (has_build_id) {
    rc = mp__plat_object_find(id, idlen, (int)is_main, path, off, (int)exec,
                              &base);
    if (rc == -ENOENT && !is_main && namelen > 0 &&
        mp__plat_object_id_by_name(path, mine, &minelen, NULL) == -ENOENT) {
      /* What Python's import does: load the module the function lives in
       * (only if nothing of that name is loaded: a loaded file of another
       * build is refused below, not replaced). */
      if ((rc = load_object(path, err, errcap)) != 0)
        return rc;
      rc = mp__plat_object_find(id, idlen, 0, path, off, (int)exec, &base);
    }
    if (rc == -ENOENT) {
      /* the text only here: a forkserver child decodes its target on a
       * fresh stack, where every byte written costs */
      char idhex[130];
      hex(id, idlen, idhex, sizeof idhex);
      snprintf(err, errcap,
               "%s is not the same build as the sender's (build-id %s not "
               "loaded): refusing to use a stale address",
               what, idhex);
      return MP_EBADREF;
    }
  } else {
    if (!is_main && mp__plat_object_find(NULL, 0, 0, path, 0, 0, &base) ==
                        -ENOENT && (rc = load_object(path, err, errcap)) != 0)
      return rc;
    if (stat_id(is_main ? "/proc/self/exe" : path, mine, &minelen) != 0 ||
        minelen != idlen || memcmp(mine, id, idlen) != 0) {
      snprintf(err, errcap, "%s is not the same file as the sender's", what);
      return MP_EBADREF;
    }
    rc = mp__plat_object_find(NULL, 0, (int)is_main, path, off, (int)exec,
                              &base);
  }
  if (rc == -EFAULT) {
    snprintf(err, errcap, "offset %#llx is outside %s's %s segments",
             (unsigned long long)off, what, exec ? "code" : "loaded");
    return MP_EBADREF;
  }
  if (rc) {
    snprintf(err, errcap, "%s is not loaded", what);
    return MP_EBADREF;
  }
  void *a = (void *)(base + (uintptr_t)off);
  /* A peer's offset must be where a function starts.  A trusted sender's
   * (a child's own parent) needs no look: it is a function pointer that
   * program took, in the same build, and it could load any object anyway.
   * The look (the dynamic symbols, else the file's) is a forkserver
   * child's costliest step before its target. */
  if (exec && !trusted && mp__plat_func_info(a, NULL) == MP__PLAT_FN_INSIDE) {
    snprintf(err, errcap, "no function starts at offset %#llx of %s",
             (unsigned long long)off, what);
    return MP_EBADREF;
  }
  *addr = a;
  /* What the lookups loaded (dlopen) moved the counts: the next call's
   * look at them decides. */
  if (gen && span <= MEMO_BYTES) {
    ref_memo *e = memo_slot(dec_memo, &dec_next);
    e->gen = mp__plat_objects_gen();
    e->addr = a;
    e->len = (uint32_t)span;
    memcpy(e->bytes, start, span);
  }
  return 0;
}

int
mp__funcref_decode(const uint8_t **p, const uint8_t *end, void **addr,
                   char *err, size_t errcap)
{
  return decode(p, end, addr, err, errcap, 0);
}

int
mp__funcref_decode_code(const uint8_t **p, const uint8_t *end, void **addr,
                        char *err, size_t errcap)
{
  return decode(p, end, addr, err, errcap, 1);
}

int
mp__funcref_describe(const void *addr, mp__buf *b)
{
  const char *name = NULL;
  char tmp[64];
  int n;
  if (mp__plat_func_info(addr, &name) == MP__PLAT_FN_START && name && *name)
    return mp__buf_append(b, name, strlen(name)) ? MP_ENOMEM : 0;
  static _Thread_local mp__plat_object o; /* 4 KiB: keep it off the stack */
  if (mp__plat_object_of(addr, &o) != 0) {
    n = snprintf(tmp, sizeof tmp, "at %p", addr);
    return mp__buf_append(b, tmp, (size_t)n) ? MP_ENOMEM : 0;
  }
  char exe[4096];
  const char *file = o.name;
  if (o.is_main && mp__plat_exe_path(exe, sizeof exe) == 0)
    file = exe;
  const char *slash = strrchr(file, '/');
  if (slash)
    file = slash + 1;
  n = snprintf(tmp, sizeof tmp, "+%#llx",
               (unsigned long long)((uintptr_t)addr - o.base));
  if (mp__buf_append(b, "at ", 3) ||
      mp__buf_append(b, *file ? file : "?", *file ? strlen(file) : 1) ||
      mp__buf_append(b, tmp, (size_t)n))
    return MP_ENOMEM;
  return 0;
}
