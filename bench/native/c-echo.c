// c-echo: the reference ceiling for iomux's echo benchmarks.
//
// A minimal single-threaded, level-triggered epoll TCP echo server, written the way the fastest
// servers are: nonblocking sockets, accept4() in a loop until EAGAIN, TCP_NODELAY, one read then
// an immediate write-back of the same bytes. Bytes the kernel did not take are queued on the
// connection, which then waits for EPOLLOUT and stops reading until the queue is drained, so a
// connection never buffers more than one read (backpressure) and no byte is ever lost.
//
// Usage: c-echo [--host 127.0.0.1] [--port N]     (port 0 = ephemeral)
// Prints "listening <port>" on stdout once ready; exits cleanly on SIGINT / SIGTERM.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

enum {
  kReadBufSize = 64 * 1024,  // one read; also the most a connection ever queues
  kMaxEvents = 1024,
  kBacklog = 4096,  // capped by net.core.somaxconn
};

// Per-connection state, indexed by fd. `pending` holds bytes read but not yet written back.
typedef struct {
  bool open;
  uint8_t* pending;
  size_t pending_off;
  size_t pending_len;
} Conn;

typedef struct {
  int epfd;
  int listen_fd;
  int signal_fd;
  int spare_fd;  // reserved fd, released to shed connections on EMFILE (as libuv does)
  Conn* conns;
  size_t conns_cap;
  size_t open_count;
  uint8_t buf[kReadBufSize];
} Server;

static void usage(FILE* out) {
  fprintf(out,
          "usage: c-echo [--host ADDR] [--port N]\n"
          "  --host ADDR  address to listen on (default 127.0.0.1)\n"
          "  --port N     TCP port, 0 = ephemeral (default 0)\n"
          "Prints 'listening <port>' on stdout when ready; SIGINT/SIGTERM stop it.\n");
}

// Matches "--name value" or "--name=value"; advances *i past a consumed separate value.
static bool take_opt(int argc, char** argv, int* i, const char* name, const char** value) {
  const char* arg = argv[*i];
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0) return false;
  if (arg[len] == '=') {
    *value = arg + len + 1;
    return true;
  }
  if (arg[len] != '\0') return false;
  if (*i + 1 >= argc) {
    fprintf(stderr, "c-echo: %s needs a value\n", name);
    exit(2);
  }
  *i += 1;
  *value = argv[*i];
  return true;
}

static int epoll_set(Server* s, int op, int fd, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  return epoll_ctl(s->epfd, op, fd, &ev);
}

static void conn_close(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  free(c->pending);
  c->pending = NULL;
  if (!c->open) return;
  memset(c, 0, sizeof *c);
  close(fd);  // also removes it from the epoll set
  s->open_count--;
}

// Accepts until the queue is empty. Transient per-connection errors are skipped.
static void on_accept(Server* s) {
  for (;;) {
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if ((errno == EMFILE || errno == ENFILE) && s->spare_fd >= 0) {
        // Out of descriptors: accept and drop one connection so the listener does not spin.
        close(s->spare_fd);
        int victim = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (victim >= 0) close(victim);
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        static bool warned = false;
        if (!warned) {
          fprintf(stderr, "c-echo: out of file descriptors, dropping connections\n");
          warned = true;
        }
        continue;
      }
      perror("c-echo: accept4");
      return;  // ENOBUFS / ENOMEM: level-triggered epoll retries on the next wake-up
    }
    if ((size_t)fd >= s->conns_cap) {  // cannot happen below RLIMIT_NOFILE; be safe anyway
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN) < 0) {
      perror("c-echo: epoll_ctl add");
      close(fd);
      continue;
    }
    s->conns[fd].open = true;
    s->open_count++;
  }
}

// Writes the queued bytes; when all are out, goes back to reading.
static void on_writable(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  while (c->pending_off < c->pending_len) {
    ssize_t n =
        send(fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      conn_close(s, fd);
      return;
    }
    c->pending_off += (size_t)n;
  }
  free(c->pending);
  c->pending = NULL;
  c->pending_off = c->pending_len = 0;
  if (epoll_set(s, EPOLL_CTL_MOD, fd, EPOLLIN) < 0) conn_close(s, fd);
}

// One read, then write the same bytes back at once; queue whatever the kernel did not take.
static void on_readable(Server* s, int fd) {
  ssize_t n = recv(fd, s->buf, sizeof s->buf, 0);
  if (n == 0) {  // EOF: everything read so far has been written back (nothing is pending here)
    conn_close(s, fd);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_close(s, fd);
    return;
  }
  size_t len = (size_t)n;
  size_t sent = 0;
  while (sent < len) {
    ssize_t w = send(fd, s->buf + sent, len - sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_close(s, fd);
      return;
    }
    sent += (size_t)w;
  }
  if (sent == len) return;
  Conn* c = &s->conns[fd];
  c->pending = malloc(len - sent);
  if (c->pending == NULL) {
    fprintf(stderr, "c-echo: out of memory, closing a connection\n");
    conn_close(s, fd);
    return;
  }
  memcpy(c->pending, s->buf + sent, len - sent);
  c->pending_off = 0;
  c->pending_len = len - sent;
  // Stop reading until the queue drains: bounded memory, and the peer sees backpressure.
  if (epoll_set(s, EPOLL_CTL_MOD, fd, EPOLLOUT) < 0) conn_close(s, fd);
}

static int open_listener(const char* host, const char* port) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "c-echo: cannot resolve %s: %s\n", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo* ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, kBacklog) == 0) break;
    fprintf(stderr, "c-echo: cannot listen on %s:%s: %s\n", host, port, strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static int listen_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr*)&ss, &len) < 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in*)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
  return -1;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  const char* port = "0";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (take_opt(argc, argv, &i, "--host", &host) || take_opt(argc, argv, &i, "--port", &port)) {
      continue;
    }
    fprintf(stderr, "c-echo: unknown argument '%s'\n", argv[i]);
    usage(stderr);
    return 2;
  }
  char* end = NULL;
  errno = 0;
  long port_num = strtol(port, &end, 10);
  if (errno != 0 || end == port || *end != '\0' || port_num < 0 || port_num > 65535) {
    fprintf(stderr, "c-echo: --port must be an integer 0..65535, got '%s'\n", port);
    return 2;
  }

  static Server server;  // holds the 64 KiB read buffer: keep it off the stack
  Server* s = &server;
  s->epfd = s->listen_fd = s->signal_fd = s->spare_fd = -1;

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX) {
    rl.rlim_cur = 1u << 20;
  }
  s->conns_cap = (size_t)rl.rlim_cur;
  s->conns = calloc(s->conns_cap, sizeof *s->conns);
  if (s->conns == NULL) {
    fprintf(stderr, "c-echo: out of memory\n");
    return 1;
  }

  // SIGINT/SIGTERM arrive through a signalfd in the epoll set: no race with epoll_wait.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  int status = 1;
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
    perror("c-echo: sigprocmask");
    goto out;
  }
  s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (s->signal_fd < 0 || s->epfd < 0) {
    perror("c-echo: setup");
    goto out;
  }
  s->listen_fd = open_listener(host, port);
  if (s->listen_fd < 0) goto out;
  if (epoll_set(s, EPOLL_CTL_ADD, s->listen_fd, EPOLLIN) < 0 ||
      epoll_set(s, EPOLL_CTL_ADD, s->signal_fd, EPOLLIN) < 0) {
    perror("c-echo: epoll_ctl");
    goto out;
  }
  printf("listening %d\n", listen_port(s->listen_fd));
  fflush(stdout);

  static struct epoll_event events[kMaxEvents];
  bool running = true;
  while (running) {
    int n = epoll_wait(s->epfd, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("c-echo: epoll_wait");
      goto out;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      uint32_t ev = events[i].events;
      if (fd == s->listen_fd) {
        on_accept(s);
      } else if (fd == s->signal_fd) {
        running = false;
      } else if (s->conns[fd].open) {  // may have been closed earlier in this batch
        // Errors and hang-ups surface through the read or write that follows.
        if (s->conns[fd].pending_len > 0) {
          on_writable(s, fd);
        } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          on_readable(s, fd);
        }
      }
    }
  }
  status = 0;

out:
  for (size_t fd = 0; fd < s->conns_cap; fd++) {
    if (s->conns[fd].open) conn_close(s, (int)fd);
  }
  free(s->conns);
  if (s->listen_fd >= 0) close(s->listen_fd);
  if (s->signal_fd >= 0) close(s->signal_fd);
  if (s->spare_fd >= 0) close(s->spare_fd);
  if (s->epfd >= 0) close(s->epfd);
  return status;
}
