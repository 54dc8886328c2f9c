// c-http: the "minimal C HTTP server" that examples/http-hello is measured against.
//
// A single-threaded, level-triggered epoll HTTP/1.1 keep-alive server with one fixed answer:
// 200 "Hello, World!" (with a Date header, as http-hello and node:http send). Each connection
// reads into its own buffer, answers every complete request in it at once (pipelined requests
// get their responses in one send), and keeps an incomplete one for the next read. Responses the
// kernel did not take wait for EPOLLOUT, and the connection reads nothing more until they are
// out, so memory per connection is bounded. It parses no more than it must: the end of the head,
// Content-Length (the body is skipped) and a refused Transfer-Encoding. Any head or body that
// does not fit the buffer gets a 4xx/5xx with Connection: close.
//
// Usage: c-http [--host 127.0.0.1] [--port N]     (port 0 = ephemeral)
// Prints "listening <port>" on stdout once ready; exits cleanly on SIGINT / SIGTERM.

#define _GNU_SOURCE
#include <ctype.h>
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
#include <time.h>
#include <unistd.h>

#include "ref-server.h"

enum {
  kInCap = 16 * 1024,   // one request, head and body, must fit
  kOutCap = 64 * 1024,  // responses queued per connection before it stops parsing
  kMaxEvents = 1024,
  // Accepts per wake-up: a client that reconnects as fast as connections are shed (EMFILE) would
  // otherwise keep the loop here forever; level-triggered epoll brings the rest next time.
  kAcceptBatch = 256,
  kRespCap = 256,
};

typedef struct {
  bool open;
  bool want_out;     // registered for EPOLLOUT (and not EPOLLIN)
  bool close_after;  // close once `out` is written (an error response)
  char* in;
  size_t in_len;
  char* out;
  size_t out_off;
  size_t out_len;
} Conn;

typedef struct {
  RefLoop loop;
  Conn* conns;
  size_t conns_cap;
  time_t date_second;
  char hello[kRespCap];  // the 200 response, rebuilt when the second changes
  size_t hello_len;
} Server;

// Rebuilds the hello response when the wall-clock second changed (the Date header).
static void refresh_hello(Server* s) {
  time_t now = time(NULL);
  if (now == s->date_second && s->hello_len > 0) return;
  s->date_second = now;
  struct tm tm;
  char date[64] = "Thu, 01 Jan 1970 00:00:00 GMT";
  if (gmtime_r(&now, &tm) != NULL) strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  int n = snprintf(s->hello, sizeof s->hello,
                   "HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                   "Content-Length: 13\r\n\r\nHello, World!",
                   date);
  s->hello_len = n > 0 && (size_t)n < sizeof s->hello ? (size_t)n : 0;
}

static void conn_close(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  if (!c->open) return;
  free(c->in);
  free(c->out);
  memset(c, 0, sizeof *c);
  close(fd);  // also removes it from the epoll set
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
        if (ref_shed_connection("c-http", s->loop.listen_fd, &s->loop.spare_fd)) continue;
        return;  // nothing queued, or no fd to spare: the next wake-up tries again
      }
      perror("c-http: accept4");
      return;  // ENOBUFS / ENOMEM: level-triggered epoll retries on the next wake-up
    }
    if ((size_t)fd >= s->conns_cap) {  // cannot happen below RLIMIT_NOFILE; be safe anyway
      close(fd);
      continue;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
      perror("c-http: TCP_NODELAY");  // slower answers, still correct ones
    Conn* c = &s->conns[fd];
    c->in = malloc(kInCap);
    c->out = malloc(kOutCap);
    if (c->in == NULL || c->out == NULL) {
      fprintf(stderr, "c-http: out of memory, refusing a connection\n");
      free(c->in);
      free(c->out);
      memset(c, 0, sizeof *c);
      close(fd);
      continue;
    }
    if (ref_epoll_set(s->loop.epfd, EPOLL_CTL_ADD, fd, EPOLLIN) < 0) {
      perror("c-http: epoll_ctl add");
      free(c->in);
      free(c->out);
      memset(c, 0, sizeof *c);
      close(fd);
      continue;
    }
    c->open = true;
  }
}

// Case-insensitive prefix match of a header line against "name:".
static bool header_is(const char* line, const char* end, const char* name) {
  size_t len = strlen(name);
  if ((size_t)(end - line) < len + 1 || line[len] != ':') return false;
  for (size_t i = 0; i < len; i++) {
    if (tolower((unsigned char)line[i]) != name[i]) return false;
  }
  return true;
}

enum { kIncomplete = 0, kBad = -1 };

// Length of the first complete request in buf (head + Content-Length body), kIncomplete if more
// bytes are needed, or kBad with *status set for a request this server refuses.
static long request_length(const char* buf, size_t len, int* status) {
  const char* head_end = memmem(buf, len, "\r\n\r\n", 4);
  if (head_end == NULL) {
    if (len >= kInCap) *status = 431;
    return len >= kInCap ? kBad : kIncomplete;
  }
  size_t head_len = (size_t)(head_end - buf) + 4;
  size_t body = 0;
  const char* line = memchr(buf, '\n', head_len);  // skip the request line
  while (line != NULL && line + 1 < head_end) {
    line++;
    const char* eol = memchr(line, '\r', (size_t)(head_end + 2 - line));
    if (eol == NULL) break;
    if (header_is(line, eol, "transfer-encoding")) {
      *status = 501;
      return kBad;
    }
    if (header_is(line, eol, "content-length")) {
      const char* p = line + strlen("content-length") + 1;
      while (p < eol && (*p == ' ' || *p == '\t')) p++;
      if (p == eol) {
        *status = 400;
        return kBad;
      }
      body = 0;
      for (; p < eol && *p != ' ' && *p != '\t'; p++) {
        if (*p < '0' || *p > '9' || body > kInCap) {
          *status = *p < '0' || *p > '9' ? 400 : 413;
          return kBad;
        }
        body = body * 10 + (size_t)(*p - '0');
      }
    }
    line = memchr(line, '\n', (size_t)(head_end + 2 - line));
  }
  if (head_len + body > kInCap) {
    *status = 413;
    return kBad;
  }
  return head_len + body <= len ? (long)(head_len + body) : kIncomplete;
}

// Queues an error response and marks the connection to close once it is written.
static void queue_error(Conn* c, int status) {
  const char* reason = status == 431   ? "Request Header Fields Too Large"
                       : status == 413 ? "Content Too Large"
                       : status == 501 ? "Not Implemented"
                                       : "Bad Request";
  int n =
      snprintf(c->out + c->out_len, kOutCap - c->out_len,
               "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, reason);
  if (n > 0 && (size_t)n < kOutCap - c->out_len) c->out_len += (size_t)n;
  c->close_after = true;
  c->in_len = 0;
}

// Answers every complete request in `in` that fits in `out`; keeps the rest for later.
static void parse_requests(Server* s, Conn* c) {
  refresh_hello(s);
  size_t used = 0;
  while (!c->close_after && kOutCap - c->out_len >= kRespCap) {
    int status = 0;
    long n = request_length(c->in + used, c->in_len - used, &status);
    if (n == kIncomplete) break;
    if (n == kBad) {
      queue_error(c, status);
      return;
    }
    memcpy(c->out + c->out_len, s->hello, s->hello_len);
    c->out_len += s->hello_len;
    used += (size_t)n;
  }
  if (used > 0) {
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
  }
}

// Sends `out`; false if the connection was closed. Leaves the unsent rest in `out`.
static bool flush(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  while (c->out_off < c->out_len) {
    ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      conn_close(s, fd);
      return false;
    }
    c->out_off += (size_t)n;
  }
  c->out_off = c->out_len = 0;
  if (c->close_after) {
    conn_close(s, fd);
    return false;
  }
  return true;
}

// Parses and answers until the input holds no complete request or the kernel stops taking bytes;
// then waits for EPOLLOUT (not reading) or EPOLLIN accordingly.
static void serve(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  for (;;) {
    parse_requests(s, c);
    if (c->out_len == 0) break;
    if (!flush(s, fd)) return;
    if (c->out_len > 0) break;  // the kernel's buffer is full
  }
  bool want_out = c->out_len > 0;
  if (want_out == c->want_out) return;
  if (ref_epoll_set(s->loop.epfd, EPOLL_CTL_MOD, fd, want_out ? EPOLLOUT : EPOLLIN) < 0) {
    perror("c-http: epoll_ctl mod");
    conn_close(s, fd);
    return;
  }
  c->want_out = want_out;
}

static void on_readable(Server* s, int fd) {
  Conn* c = &s->conns[fd];
  ssize_t n = recv(fd, c->in + c->in_len, kInCap - c->in_len, 0);
  if (n == 0) {  // EOF: every complete request has been answered already
    conn_close(s, fd);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_close(s, fd);
    return;
  }
  c->in_len += (size_t)n;
  serve(s, fd);
}

int main(int argc, char** argv) {
  const char* host;
  const char* port;
  int parsed = ref_parse_args("c-http", argc, argv, &host, &port);
  if (parsed >= 0) return parsed;

  static Server server;
  Server* s = &server;
  s->loop.epfd = s->loop.listen_fd = s->loop.signal_fd = s->loop.spare_fd = -1;

  s->conns_cap = ref_fd_table_cap();
  s->conns = calloc(s->conns_cap, sizeof *s->conns);
  if (s->conns == NULL) {
    fprintf(stderr, "c-http: out of memory\n");
    return 1;
  }

  int status = 1;
  if (ref_loop_open(&s->loop, "c-http", host, port) < 0) goto out;

  static struct epoll_event events[kMaxEvents];
  bool running = true;
  while (running) {
    int n = epoll_wait(s->loop.epfd, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("c-http: epoll_wait");
      goto out;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == s->loop.listen_fd) {
        on_accept(s);
      } else if (fd == s->loop.signal_fd) {
        running = false;
      } else if (s->conns[fd].open) {  // may have been closed earlier in this batch
        // Errors and hang-ups surface through the send or recv that follows.
        if (s->conns[fd].want_out) {
          if (flush(s, fd) && s->conns[fd].out_len == 0) serve(s, fd);
        } else {
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
