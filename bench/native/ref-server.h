// What the C reference servers (c-echo.c, c-http.c) share and nothing of what they measure:
// command line, listening socket, and SIGINT/SIGTERM as a signalfd. Each server is still one
// file of its own protocol logic; this keeps the start-up code in one copy.

#ifndef IOMUX_BENCH_REF_SERVER_H
#define IOMUX_BENCH_REF_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kRefBacklog = 4096 };  // capped by net.core.somaxconn

static inline void ref_usage(FILE* out, const char* prog) {
  fprintf(out,
          "usage: %s [--host ADDR] [--port N]\n"
          "  --host ADDR  address to listen on (default 127.0.0.1)\n"
          "  --port N     TCP port, 0 = ephemeral (default 0)\n"
          "Prints 'listening <port>' on stdout when ready; SIGINT/SIGTERM stop it.\n",
          prog);
}

// Matches "--name value" or "--name=value"; advances *i past a consumed separate value.
// Returns 1 matched, 0 not this option, -1 the value is missing.
static inline int ref_take_opt(int argc, char** argv, int* i, const char* name,
                               const char** value) {
  const char* arg = argv[*i];
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0) return 0;
  if (arg[len] == '=') {
    *value = arg + len + 1;
    return 1;
  }
  if (arg[len] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *i += 1;
  *value = argv[*i];
  return 1;
}

// Parses --host and --port into *host / *port (defaults 127.0.0.1 and 0). Returns -1 to go on,
// or the status to exit with: 0 after --help, 2 after a usage error (already printed).
static inline int ref_parse_args(const char* prog, int argc, char** argv, const char** host,
                                 const char** port) {
  *host = "127.0.0.1";
  *port = "0";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      ref_usage(stdout, prog);
      return 0;
    }
    int taken = ref_take_opt(argc, argv, &i, "--host", host);
    if (taken == 0) taken = ref_take_opt(argc, argv, &i, "--port", port);
    if (taken == 1) continue;
    if (taken < 0) {
      fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
    } else {
      fprintf(stderr, "%s: unknown argument '%s'\n", prog, argv[i]);
      ref_usage(stderr, prog);
    }
    return 2;
  }
  char* end = NULL;
  errno = 0;
  long port_num = strtol(*port, &end, 10);
  if (errno != 0 || end == *port || *end != '\0' || port_num < 0 || port_num > 65535) {
    fprintf(stderr, "%s: --port must be an integer 0..65535, got '%s'\n", prog, *port);
    return 2;
  }
  return -1;
}

// A nonblocking listening socket on host:port, or -1 (reason printed).
static inline int ref_open_listener(const char* prog, const char* host, const char* port) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "%s: cannot resolve %s: %s\n", prog, host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo* ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, kRefBacklog) == 0)
      break;
    fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", prog, host, port, strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

// The port a listening socket is bound to, or -1.
static inline int ref_listen_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr*)&ss, &len) < 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in*)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
  return -1;
}

// Ignores SIGPIPE and turns SIGINT/SIGTERM into a nonblocking signalfd for the epoll set (no
// race with epoll_wait); returns it, or -1 (reason printed).
static inline int ref_stop_signal_fd(const char* prog) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
    fprintf(stderr, "%s: signals: %s\n", prog, strerror(errno));
    return -1;
  }
  int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
  return fd;
}

// epoll_ctl with the fd as the event's data.
static inline int ref_epoll_set(int epfd, int op, int fd, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  return epoll_ctl(epfd, op, fd, &ev);
}

// accept4 failed with EMFILE/ENFILE: frees the reserved fd, accepts and drops one connection so
// the level-triggered listener does not spin, and reserves the fd again (as libuv does). Returns
// whether a connection was dropped: false when the queue was empty (accept4 reports EMFILE before
// it looks at the queue, so an empty one ends up here too) or there is no reserved fd to spend;
// the caller then stops accepting until the next wake-up. Warns once per process.
static inline bool ref_shed_connection(const char* prog, int listen_fd, int* spare_fd) {
  if (*spare_fd < 0) return false;
  close(*spare_fd);
  int victim = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (victim >= 0) close(victim);
  *spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (victim < 0) return false;
  static bool warned = false;
  if (!warned) {
    fprintf(stderr, "%s: out of file descriptors, dropping connections\n", prog);
    warned = true;
  }
  return true;
}

// Entries a table indexed by fd needs: RLIMIT_NOFILE's soft limit (2^20 when unlimited).
static inline size_t ref_fd_table_cap(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX)
    rl.rlim_cur = 1u << 20;
  return (size_t)rl.rlim_cur;
}

// The descriptors every reference server runs on; the listener and the stop signal are in epfd.
typedef struct {
  int epfd;
  int listen_fd;
  int signal_fd;
  int spare_fd;  // reserved fd, released to shed connections on EMFILE (as libuv does)
} RefLoop;

// Opens the stop signal, the epoll set, the reserved fd and the listener, then prints
// "listening PORT". 0, or -1 after printing why; ref_loop_close frees what was opened either way.
static inline int ref_loop_open(RefLoop* loop, const char* prog, const char* host,
                                const char* port) {
  loop->epfd = loop->listen_fd = loop->spare_fd = -1;
  loop->signal_fd = ref_stop_signal_fd(prog);
  if (loop->signal_fd < 0) return -1;
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd < 0) {
    fprintf(stderr, "%s: epoll_create1: %s\n", prog, strerror(errno));
    return -1;
  }
  // Without it the server still runs; it only cannot shed connections at the fd limit.
  loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  loop->listen_fd = ref_open_listener(prog, host, port);
  if (loop->listen_fd < 0) return -1;
  if (ref_epoll_set(loop->epfd, EPOLL_CTL_ADD, loop->listen_fd, EPOLLIN) < 0 ||
      ref_epoll_set(loop->epfd, EPOLL_CTL_ADD, loop->signal_fd, EPOLLIN) < 0) {
    fprintf(stderr, "%s: epoll_ctl: %s\n", prog, strerror(errno));
    return -1;
  }
  printf("listening %d\n", ref_listen_port(loop->listen_fd));
  fflush(stdout);
  return 0;
}

static inline void ref_loop_close(RefLoop* loop) {
  if (loop->listen_fd >= 0) close(loop->listen_fd);
  if (loop->signal_fd >= 0) close(loop->signal_fd);
  if (loop->spare_fd >= 0) close(loop->spare_fd);
  if (loop->epfd >= 0) close(loop->epfd);
}

#endif  // IOMUX_BENCH_REF_SERVER_H
