/* mproc version and export macros. */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0
#define MPROC_VERSION_STRING "0.1.0"

#if defined(MPROC_BUILDING)
#define MP_EXTERN __attribute__((visibility("default")))
#else
#define MP_EXTERN
#endif

/* Wait without limit: the value of any `double timeout` argument. */
#define MP_FOREVER (-1.0)

#endif
