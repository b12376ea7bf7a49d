/* SPDX-License-Identifier: MIT */
/* Addresses in mproc's string syntax (conn.h documents it): parsing into a
 * socket address, and formatting a socket address back.
 *
 *   "@name"        Linux abstract AF_UNIX name
 *   anything with '/'   an AF_UNIX path
 *   "[v6]:port"    AF_INET6
 *   "host:port"    AF_INET/AF_INET6 by name resolution; the port must be a
 *                  decimal 0-65535 (a path with ':' is written "./a:b")
 *   anything else  a relative AF_UNIX path */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "conn/conn_internal.h"


/* The port of a host:port address: a decimal number in 0-65535 (leading
 * zeros allowed), nothing else -- no sign, space, hex or service name.
 * `whole` is the address, for the detail. */
static int
parse_port(const char *p, const char *whole, unsigned *out)
{
  static const char hint[] =
      " (an AF_UNIX path containing ':' is written with a '/', e.g. './a:b')";
  if (!*p)
    return mp_seterr(MP_EINVAL, "no port after ':' in '%s'%s", whole, hint);
  unsigned long v = 0;
  for (const char *q = p; *q; q++) {
    if (*q < '0' || *q > '9')
      return mp_seterr(MP_EINVAL,
                       "port '%s' in '%s' is not a decimal number%s", p,
                       whole, hint);
    if (v <= 65535)
      v = v * 10 + (unsigned long)(*q - '0');
  }
  if (v > 65535)
    return mp_seterr(MP_EINVAL, "port %s in '%s' is out of range 0-65535", p,
                     whole);
  *out = (unsigned)v;
  return 0;
}

static int
resolve(const char *host, unsigned portnum, int family, int passive,
        mp__addr *a)
{
  struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_NUMERICSERV
                                        | (passive ? AI_PASSIVE : 0) };
  char port[8];
  snprintf(port, sizeof port, "%u", portnum);
  if (family == AF_INET6)
    hints.ai_flags |= AI_NUMERICHOST;
  struct addrinfo *res = NULL;
  int e = getaddrinfo(*host ? host : NULL, port, &hints, &res);
  if (e || !res) {
    if (e == EAI_SYSTEM)
      return mp__errno();
    return mp_seterr(MP_ENOTFOUND, "cannot resolve '%s': %s", host,
                     gai_strerror(e));
  }
  memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
  a->len = res->ai_addrlen;
  a->family = res->ai_family;
  freeaddrinfo(res);
  return 0;
}

/* The syntax is documented in conn.h: a leading '@' makes an abstract
 * name, a '/' anywhere a path, a leading '[' an IPv6 [addr]:port, any other
 * ':' a host:port (whose port must be valid: a mistyped TCP address is an
 * error, never a socket file); anything else is a path. */
int
mp__addr_parse(const char *s, int passive, mp__addr *a)
{
  memset(a, 0, sizeof *a);
  size_t n = strlen(s);
  if (n == 0)
    return mp_seterr(MP_EINVAL, "empty address");
  if (s[0] == '@' || strchr(s, '/') || (s[0] != '[' && !strchr(s, ':'))) {
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    if (n >= sizeof un->sun_path)
      return mp_seterr(MP_EINVAL, "AF_UNIX address too long (%zu bytes)", n);
    un->sun_family = AF_UNIX;
    a->family = AF_UNIX;
    if (s[0] == '@') {
      a->abstract = 1;
      un->sun_path[0] = '\0';
      memcpy(un->sun_path + 1, s + 1, n - 1);
      a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
      memcpy(un->sun_path, s, n + 1);
      a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
  }
  char host[256];
  const char *port;
  int family = AF_INET;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return mp_seterr(MP_EINVAL, "bad IPv6 address '%s' (want [addr]:port)",
                       s);
    size_t hl = (size_t)(close - s - 1);
    if (hl >= sizeof host)
      return mp_seterr(MP_EINVAL, "host name too long");
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    port = close + 2;
    family = AF_INET6;
  } else {
    const char *colon = strrchr(s, ':');
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host)
      return mp_seterr(MP_EINVAL, "host name too long");
    memcpy(host, s, hl);
    host[hl] = '\0';
    port = colon + 1;
  }
  unsigned portnum = 0;
  int rc = parse_port(port, s, &portnum);
  if (rc)
    return rc;
  return resolve(host, portnum, family, passive, a);
}

/* The address in mproc's string syntax (malloc'd), or NULL. */
char *
mp__addr_format(const struct sockaddr *sa, socklen_t len)
{
  char buf[INET6_ADDRSTRLEN + 16];
  char *r = NULL;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(buf, sizeof buf, "%s:%u", ip, ntohs(in->sin_port));
    r = strdup(buf);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)sa;
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in->sin6_addr, ip, sizeof ip);
    snprintf(buf, sizeof buf, "[%s]:%u", ip, ntohs(in->sin6_port));
    r = strdup(buf);
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (len <= off)
      return strdup("");
    size_t n = len - off;
    if (un->sun_path[0] == '\0') {
      r = malloc(n + 1);
      if (r) {
        r[0] = '@';
        memcpy(r + 1, un->sun_path + 1, n - 1);
        r[n] = '\0';
      }
    } else {
      r = strndup(un->sun_path, n);
    }
  } else {
    r = strdup("");
  }
  return r;
}
