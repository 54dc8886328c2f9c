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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ref-server.h"

enum {
  kReadBufSize = 64 * 1024,  // one read; also the most a connection ever queues
  kMaxEvents = 1024,
  // Accepts per wake-up: a client that reconnects as fast as connections are shed (EMFILE) would
  // otherwise keep the loop here forever; level-triggered epoll brings the rest next time.
  kAcceptBatch = 256,
};

// Per-connection state, indexed by fd. `pending` holds bytes read but not yet written back.
typedef struct {
  bool open;
  uint8_t* pending;
  size_t pending_off;
  size_t pending_len;
} Conn;

typedef struct {
  RefLoop loop;
  Conn* conns;
  size_t conns_cap;
  size_t open_count;
  uint8_t buf[kReadBufSize];
} Server;

static void conn_close(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  free(c->pending);
  c->pending = NULL;
  if (!c->open) return;
  memset(c, 0, sizeof *c);
  close(fd);  // also removes it from the epoll set
  s->open_count--;
}

// Accepts until the queue is empty or kAcceptBatch connections are in. Transient per-connection
// errors are skipped.
static void on_accept(Server* s) {
  for (int i = 0; i < kAcceptBatch; i++) {
    int fd = accept4(s->loop.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EMFILE || errno == ENFILE) {
        if (ref_shed_connection("c-echo", s->loop.listen_fd, &s->loop.spare_fd)) continue;
        return;  // nothing queued, or no fd to spare: the next wake-up tries again
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
    if (ref_epoll_set(s->loop.epfd, EPOLL_CTL_ADD, fd, EPOLLIN) < 0) {
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
  if (ref_epoll_set(s->loop.epfd, EPOLL_CTL_MOD, fd, EPOLLIN) < 0) conn_close(s, fd);
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
  if (ref_epoll_set(s->loop.epfd, EPOLL_CTL_MOD, fd, EPOLLOUT) < 0) conn_close(s, fd);
}

int main(int argc, char** argv) {
  const char* host;
  const char* port;
  int parsed = ref_parse_args("c-echo", argc, argv, &host, &port);
  if (parsed >= 0) return parsed;

  static Server server;  // holds the 64 KiB read buffer: keep it off the stack
  Server* s = &server;
  s->loop.epfd = s->loop.listen_fd = s->loop.signal_fd = s->loop.spare_fd = -1;

  s->conns_cap = ref_fd_table_cap();
  s->conns = calloc(s->conns_cap, sizeof *s->conns);
  if (s->conns == NULL) {
    fprintf(stderr, "c-echo: out of memory\n");
    return 1;
  }

  int status = 1;
  if (ref_loop_open(&s->loop, "c-echo", host, port) < 0) goto out;

  static struct epoll_event events[kMaxEvents];
  bool running = true;
  while (running) {
    int n = epoll_wait(s->loop.epfd, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("c-echo: epoll_wait");
      goto out;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      uint32_t ev = events[i].events;
      if (fd == s->loop.listen_fd) {
        on_accept(s);
      } else if (fd == s->loop.signal_fd) {
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
  ref_loop_close(&s->loop);
  return status;
}
