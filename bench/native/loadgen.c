// loadgen: a native, multi-threaded, closed-loop TCP echo load generator for iomux's benchmarks.
//
// Each connection keeps --pipeline messages of --size bytes in flight: whenever one whole message
// has come back, the next one is sent (pipeline 1 = ping-pong). Every echoed byte is compared with
// what was sent: the byte stream of a connection is a pseudo-random pad at a per-connection phase
// with each message's first 8 bytes replaced by its sequence number XOR a per-connection key, so
// lost, duplicated, reordered or crossed bytes are all caught. Any mismatch is reported and makes
// the exit status non-zero.
//
// Phases: connect every connection and do one unmeasured round trip on it, which proves the server
// has accepted it (a bounded number of connections in this phase per thread); then start all
// threads at once: messages completed during the first --warmup seconds are not counted, then
// --duration seconds are measured. Each thread runs its own epoll loop over its connections.
// With --server-pid, the server's CPU time (utime+stime) and RSS are sampled at the start and end
// of the measured window. Only loopback targets are accepted. Run with --help for the options.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum {
  kChunk = 64 * 1024,   // largest single send / recv
  kPadLen = 65521,      // prime length of the pattern pad, so shifts do not line up with it
  kMaxEvents = 1024,    // events drained per epoll_wait
  kConnectWindow = 64,  // handshakes in flight per process, split across threads
  kFdReserve = 16,      // descriptors kept for stdio, epoll fds, /proc reads
  kMaxErrorLines = 20,  // error lines printed to stderr before going quiet
  kSubBits = 6,         // histogram: 64 linear sub-buckets per power of two (<1.6% error)
  kSub = 1 << kSubBits,
  kHistMaxMsb = 40,  // values are clamped to 2^41 ns (about 36 minutes)
  kHistBuckets = (kHistMaxMsb - kSubBits + 2) * kSub,
};

static const uint64_t kNsPerSec = 1000000000u;

// ---------------------------------------------------------------------------------------------
// Configuration

typedef struct {
  const char* host;
  struct sockaddr_storage dst;
  socklen_t dst_len;
  int family;
  uint32_t port;
  uint32_t connections;
  uint32_t size;
  uint32_t pipeline;
  uint32_t threads;
  uint32_t sources;
  double duration_s;
  double warmup_s;
  double connect_timeout_s;
  long server_pid;  // 0 = none
  bool json;
} Config;

static Config cfg = {
    .host = "127.0.0.1",
    .port = 0,
    .connections = 1,
    .size = 64,
    .pipeline = 1,
    .threads = 1,
    .sources = 1,
    .duration_s = 5.0,
    .warmup_s = 1.0,
    .connect_timeout_s = 30.0,
    .server_pid = 0,
    .json = false,
};

static void usage(FILE* out) {
  fprintf(out,
          "usage: loadgen --port N [options]\n"
          "  --host ADDR            loopback target: 127.x.x.x, ::1 or localhost (127.0.0.1)\n"
          "  --port N               target port (required)\n"
          "  --connections C        concurrent connections (1)\n"
          "  --size BYTES           message size, 1..1048576 (64)\n"
          "  --pipeline D           messages in flight per connection, 1..1024 (1 = ping-pong)\n"
          "  --duration SECONDS     measured time (5)\n"
          "  --warmup SECONDS       unmeasured time before it (1)\n"
          "  --threads T            threads, each with its own epoll loop (1)\n"
          "  --sources N            spread connections over source addresses 127.0.0.1..N (1);\n"
          "                         needed past ~14k connections\n"
          "  --connect-timeout SEC  give up on connections not established by then (30)\n"
          "  --server-pid PID       sample that process's CPU time and RSS over the window\n"
          "  --json                 print the result as one JSON object on stdout\n"
          "Exit status: 0 ok, 1 errors (connect, reset or verify) or nothing measured, 2 usage.\n");
}

static _Noreturn void die_usage(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die_usage(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static uint32_t parse_uint(const char* name, const char* s, uint32_t min, uint32_t max) {
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
    char range[64];
    snprintf(range, sizeof range, "an integer %" PRIu32 "..%" PRIu32, min, max);
    fprintf(stderr, "loadgen: %s must be %s, got '%s'\n", name, range, s);
    exit(2);
  }
  return (uint32_t)v;
}

static double parse_seconds(const char* name, const char* s, double min, double max) {
  char* end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
    fprintf(stderr, "loadgen: %s must be a number of seconds %g..%g, got '%s'\n", name, min, max,
            s);
    exit(2);
  }
  return v;
}

// Accepts only loopback targets, so the tool cannot be pointed at someone else's machine.
static void resolve_host(void) {
  const char* h = strcmp(cfg.host, "localhost") == 0 ? "127.0.0.1" : cfg.host;
  memset(&cfg.dst, 0, sizeof cfg.dst);
  struct sockaddr_in* v4 = (struct sockaddr_in*)&cfg.dst;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)&cfg.dst;
  if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
    if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127) {
      die_usage("refusing --host %s: only loopback targets (127.x.x.x, ::1, localhost)", cfg.host);
    }
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)cfg.port);
    cfg.dst_len = sizeof *v4;
    cfg.family = AF_INET;
  } else if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) {
      die_usage("refusing --host %s: only loopback targets (127.x.x.x, ::1, localhost)", cfg.host);
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)cfg.port);
    cfg.dst_len = sizeof *v6;
    cfg.family = AF_INET6;
    if (cfg.sources > 1) die_usage("--sources > 1 needs an IPv4 target, not %s", h);
  } else {
    die_usage("refusing --host %s: only loopback targets (127.x.x.x, ::1, localhost)", cfg.host);
  }
}

static void parse_args(int argc, char** argv) {
  bool have_port = false;
  for (int i = 1; i < argc; i++) {
    const char* arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(arg, "--json") == 0) {
      cfg.json = true;
      continue;
    }
    // Every other option takes a value: "--name value" or "--name=value".
    char name[32];
    const char* value = NULL;
    const char* eq = strchr(arg, '=');
    if (strncmp(arg, "--", 2) != 0) die_usage("unexpected argument '%s'", arg);
    if (eq != NULL) {
      size_t n = (size_t)(eq - arg);
      if (n >= sizeof name) die_usage("unknown option '%s'", arg);
      memcpy(name, arg, n);
      name[n] = '\0';
      value = eq + 1;
    } else {
      if (strlen(arg) >= sizeof name) die_usage("unknown option '%s'", arg);
      strcpy(name, arg);
      if (i + 1 >= argc) die_usage("%s needs a value", arg);
      value = argv[++i];
    }
    if (strcmp(name, "--host") == 0) {
      cfg.host = value;
    } else if (strcmp(name, "--port") == 0) {
      cfg.port = parse_uint(name, value, 1, 65535);
      have_port = true;
    } else if (strcmp(name, "--connections") == 0) {
      cfg.connections = parse_uint(name, value, 1, 10000000);
    } else if (strcmp(name, "--size") == 0) {
      cfg.size = parse_uint(name, value, 1, 1 << 20);
    } else if (strcmp(name, "--pipeline") == 0) {
      cfg.pipeline = parse_uint(name, value, 1, 1024);
    } else if (strcmp(name, "--duration") == 0) {
      cfg.duration_s = parse_seconds(name, value, 0.001, 86400);
    } else if (strcmp(name, "--warmup") == 0) {
      cfg.warmup_s = parse_seconds(name, value, 0, 86400);
    } else if (strcmp(name, "--connect-timeout") == 0) {
      cfg.connect_timeout_s = parse_seconds(name, value, 0.001, 3600);
    } else if (strcmp(name, "--threads") == 0) {
      cfg.threads = parse_uint(name, value, 1, 256);
    } else if (strcmp(name, "--sources") == 0) {
      cfg.sources = parse_uint(name, value, 1, 254);
    } else if (strcmp(name, "--server-pid") == 0) {
      cfg.server_pid = (long)parse_uint(name, value, 1, INT32_MAX);
    } else {
      die_usage("unknown option '%s' (see --help)", name);
    }
  }
  if (!have_port) die_usage("--port is required (see --help)");
  if (cfg.threads > cfg.connections) cfg.threads = cfg.connections;
  resolve_host();
}

// Every connection needs one descriptor; fail clearly rather than with EMFILE half-way through.
static void check_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;  // raise the soft limit as far as allowed
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  uint64_t need = (uint64_t)cfg.connections + cfg.threads + kFdReserve;
  if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
    fprintf(stderr,
            "loadgen: %" PRIu32 " connections need about %" PRIu64
            " file descriptors, but the limit (ulimit -n) is %llu; use at most %llu connections "
            "per process, or run several loadgen processes\n",
            cfg.connections, need, (unsigned long long)rl.rlim_cur,
            (unsigned long long)(rl.rlim_cur > (rlim_t)(cfg.threads + kFdReserve)
                                     ? rl.rlim_cur - cfg.threads - kFdReserve
                                     : 0));
    exit(2);
  }
}

// ---------------------------------------------------------------------------------------------
// Time, randomness, the verifiable byte pattern

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * kNsPerSec + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {.tv_sec = (time_t)(t / kNsPerSec), .tv_nsec = (long)(t % kNsPerSec)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

// The pad is kPadLen random bytes followed by a copy of its first kChunk bytes, so any window of
// up to kChunk bytes starting inside the pad is contiguous.
static uint8_t g_pad[kPadLen + kChunk];

static void pad_init(uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = 0; i < kPadLen; i += 8) {
    uint64_t r = splitmix64(&state);
    for (size_t j = 0; j < 8 && i + j < kPadLen; j++) g_pad[i + j] = (uint8_t)(r >> (8 * j));
  }
  for (size_t i = kPadLen; i < sizeof g_pad; i++) g_pad[i] = g_pad[i - kPadLen];
}

// Writes bytes [off, off + len) of the stream of the connection with `key` (len <= kChunk).
static void pattern(uint64_t key, uint64_t off, uint8_t* dst, size_t len) {
  memcpy(dst, g_pad + (off + key) % kPadLen, len);
  uint64_t size = cfg.size;
  uint64_t header = size < 8 ? size : 8;
  uint64_t end = off + len;
  for (uint64_t m = off / size; m * size < end; m++) {
    uint64_t base = m * size;
    uint64_t tag = m ^ key;
    for (uint64_t j = 0; j < header; j++) {
      uint64_t p = base + j;
      if (p >= off && p < end) dst[p - off] = (uint8_t)(tag >> (8 * j));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Log-linear latency histogram (nanoseconds): exact below 128 ns, then 64 buckets per octave.

typedef struct {
  uint64_t counts[kHistBuckets];
  uint64_t count;
  uint64_t max;
  double sum;
} Hist;

static size_t hist_index(uint64_t v) {
  const uint64_t cap = (UINT64_C(2) << kHistMaxMsb) - 1;
  if (v > cap) v = cap;
  if (v < kSub) return (size_t)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - kSubBits;
  return (size_t)(shift + 1) * kSub + (size_t)((v >> shift) - kSub);
}

// Highest value that falls into bucket `idx`.
static uint64_t hist_upper(size_t idx) {
  if (idx < kSub) return idx;
  unsigned shift = (unsigned)(idx / kSub) - 1;
  uint64_t mantissa = kSub + idx % kSub;
  return ((mantissa + 1) << shift) - 1;
}

static void hist_add(Hist* h, uint64_t v) {
  h->counts[hist_index(v)]++;
  h->count++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static void hist_merge(Hist* into, const Hist* from) {
  for (size_t i = 0; i < kHistBuckets; i++) into->counts[i] += from->counts[i];
  into->count += from->count;
  into->sum += from->sum;
  if (from->max > into->max) into->max = from->max;
}

static uint64_t hist_quantile(const Hist* h, double q) {
  if (h->count == 0) return 0;
  uint64_t rank = (uint64_t)ceil(q * (double)h->count);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kHistBuckets; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t v = hist_upper(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

// ---------------------------------------------------------------------------------------------
// Connections and workers

// A connection is established (kConnecting -> kPriming), then proves the server accepted it with
// one unmeasured round trip (kPriming -> kActive) before the clock starts: a server that accepts
// slowly cannot leave connections unserved inside the measured window.
enum { kIdle, kConnecting, kPriming, kActive, kDead };
enum { kErrConnect, kErrReset, kErrVerify };

typedef struct {
  int fd;
  uint8_t state;
  bool want_out;    // EPOLLOUT registered
  uint32_t id;      // global connection number
  uint64_t key;     // pattern key
  uint64_t tx_off;  // stream bytes sent
  uint64_t tx_end;  // stream bytes queued (whole messages)
  uint64_t rx_off;  // stream bytes received and verified
  uint64_t connect_start;
} Conn;

typedef struct {
  pthread_t thread;
  int epfd;
  Conn* conns;
  uint32_t nconns;
  uint64_t* stamps;  // nconns * pipeline send times, slot m % pipeline for message m
  uint8_t* rxbuf;
  uint8_t* txbuf;
  uint8_t* expbuf;
  // results
  uint32_t connected;  // TCP handshakes completed
  uint32_t ready;      // connections that completed the priming round trip
  uint64_t errors[3];
  uint64_t connect_ns_sum;
  uint64_t connect_ns_max;
  uint64_t messages;
  Hist hist;
} Worker;

static pthread_barrier_t g_barrier;
static uint64_t g_t_start, g_t_warm, g_t_end;  // written by main between the two barriers
static atomic_int g_error_lines;

static void report_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void report_error(const char* fmt, ...) {
  int n = atomic_fetch_add(&g_error_lines, 1);
  if (n > kMaxErrorLines) return;
  if (n == kMaxErrorLines) {
    fprintf(stderr, "loadgen: further errors are counted but not printed\n");
    return;
  }
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "loadgen: %s\n", line);
}

static void conn_flush(Worker* w, Conn* c);

static void conn_fail(Worker* w, Conn* c, int kind) {
  w->errors[kind]++;
  if (c->fd >= 0) close(c->fd);  // also drops it from the epoll set
  c->fd = -1;
  c->state = kDead;
}

static bool conn_watch(Worker* w, Conn* c, int op, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u64 = (uint64_t)(c - w->conns);
  if (epoll_ctl(w->epfd, op, c->fd, &ev) == 0) return true;
  report_error("connection %" PRIu32 ": epoll_ctl: %s", c->id, strerror(errno));
  return false;
}

static void conn_established(Worker* w, Conn* c, uint64_t now) {
  uint64_t took = now - c->connect_start;
  w->connect_ns_sum += took;
  if (took > w->connect_ns_max) w->connect_ns_max = took;
  w->connected++;
  c->state = kPriming;
  c->tx_end = cfg.size;  // message 0 is the priming round trip
}

// Starts a nonblocking connect. Returns true while the handshake is still in flight.
static bool conn_start(Worker* w, Conn* c) {
  c->fd = socket(cfg.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    report_error("connection %" PRIu32 ": socket: %s", c->id, strerror(errno));
    conn_fail(w, c, kErrConnect);
    return false;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (cfg.sources > 1) {
    // Bind the source address only; the port is picked at connect() time per 4-tuple.
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((UINT32_C(127) << 24) | (1 + c->id % cfg.sources));
    if (bind(c->fd, (struct sockaddr*)&src, sizeof src) != 0) {
      report_error("connection %" PRIu32 ": bind to 127.0.0.%" PRIu32 ": %s", c->id,
                   1 + c->id % cfg.sources, strerror(errno));
      conn_fail(w, c, kErrConnect);
      return false;
    }
  }
  c->connect_start = now_ns();
  if (connect(c->fd, (struct sockaddr*)&cfg.dst, cfg.dst_len) == 0) {
    if (!conn_watch(w, c, EPOLL_CTL_ADD, EPOLLIN)) {
      conn_fail(w, c, kErrConnect);
      return false;
    }
    conn_established(w, c, now_ns());
    conn_flush(w, c);
    return c->state == kPriming;
  }
  if (errno != EINPROGRESS) {
    report_error("connection %" PRIu32 ": connect: %s", c->id, strerror(errno));
    conn_fail(w, c, kErrConnect);
    return false;
  }
  if (!conn_watch(w, c, EPOLL_CTL_ADD, EPOLLOUT)) {
    conn_fail(w, c, kErrConnect);
    return false;
  }
  c->state = kConnecting;
  return true;
}

static void conn_connect_done(Worker* w, Conn* c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    report_error("connection %" PRIu32 ": connect: %s", c->id, strerror(err));
    conn_fail(w, c, kErrConnect);
    return;
  }
  if (!conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN)) {
    conn_fail(w, c, kErrConnect);
    return;
  }
  conn_established(w, c, now_ns());
  conn_flush(w, c);
}

// Sends queued stream bytes until done or the kernel pushes back; EPOLLOUT only while needed.
static void conn_flush(Worker* w, Conn* c) {
  while (c->tx_off < c->tx_end) {
    uint64_t left = c->tx_end - c->tx_off;
    size_t len = left < kChunk ? (size_t)left : kChunk;
    pattern(c->key, c->tx_off, w->txbuf, len);
    ssize_t n = send(c->fd, w->txbuf, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      report_error("connection %" PRIu32 ": send: %s", c->id, strerror(errno));
      conn_fail(w, c, kErrReset);
      return;
    }
    c->tx_off += (uint64_t)n;
    if ((size_t)n < len) break;
  }
  bool want = c->tx_off < c->tx_end;
  if (want != c->want_out) {
    if (!conn_watch(w, c, EPOLL_CTL_MOD, EPOLLIN | (want ? EPOLLOUT : 0))) {
      conn_fail(w, c, kErrReset);
      return;
    }
    c->want_out = want;
  }
}

// Reads, verifies every byte, completes messages (latency sample each) and queues their
// successors, then sends.
static void conn_read(Worker* w, Conn* c) {
  const uint64_t size = cfg.size;
  const uint64_t depth = cfg.pipeline;
  uint64_t* stamps = w->stamps + (size_t)(c - w->conns) * depth;
  for (int round = 0; round < 4; round++) {
    ssize_t n = recv(c->fd, w->rxbuf, kChunk, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      report_error("connection %" PRIu32 ": recv: %s", c->id, strerror(errno));
      conn_fail(w, c, kErrReset);
      return;
    }
    if (n == 0) {
      report_error("connection %" PRIu32 ": closed by the server", c->id);
      conn_fail(w, c, kErrReset);
      return;
    }
    uint64_t now = now_ns();
    size_t len = (size_t)n;
    if (c->rx_off + len > c->tx_off) {
      report_error("connection %" PRIu32 ": received %" PRIu64 " bytes more than were sent", c->id,
                   c->rx_off + len - c->tx_off);
      conn_fail(w, c, kErrVerify);
      return;
    }
    pattern(c->key, c->rx_off, w->expbuf, len);
    if (memcmp(w->rxbuf, w->expbuf, len) != 0) {
      size_t i = 0;
      while (w->rxbuf[i] == w->expbuf[i]) i++;
      report_error("connection %" PRIu32 ": echoed byte %" PRIu64 " (message %" PRIu64
                   ", offset %" PRIu64 ") is 0x%02x, sent 0x%02x",
                   c->id, c->rx_off + i, (c->rx_off + i) / size, (c->rx_off + i) % size,
                   w->rxbuf[i], w->expbuf[i]);
      conn_fail(w, c, kErrVerify);
      return;
    }
    bool counted = now >= g_t_warm && now < g_t_end;
    for (uint64_t m = c->rx_off / size, last = (c->rx_off + len) / size; m < last; m++) {
      if (c->state == kPriming) {  // message 0 came back: the server serves this connection
        c->state = kActive;
        continue;
      }
      uint64_t* slot = &stamps[m % depth];
      if (counted) {
        w->messages++;
        hist_add(&w->hist, now - *slot);
      }
      *slot = now;  // message m + depth reuses the slot and leaves now
      c->tx_end += size;
    }
    c->rx_off += len;
    if (len < kChunk) break;
  }
  if (c->tx_end > c->tx_off) conn_flush(w, c);
}

static void worker_connect(Worker* w) {
  uint32_t window = kConnectWindow / cfg.threads;
  if (window < 8) window = 8;
  uint64_t deadline = now_ns() + (uint64_t)(cfg.connect_timeout_s * 1e9);
  uint32_t next = 0, inflight = 0;
  struct epoll_event events[256];
  for (;;) {
    while (inflight < window && next < w->nconns) {
      if (conn_start(w, &w->conns[next++])) inflight++;
    }
    if (inflight == 0 && next == w->nconns) break;
    uint64_t now = now_ns();
    if (now >= deadline) break;
    uint64_t wait_ms = (deadline - now + 999999) / 1000000;
    int n = epoll_wait(w->epfd, events, 256, wait_ms < 100 ? (int)wait_ms : 100);
    if (n < 0 && errno != EINTR) {
      report_error("epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      Conn* c = &w->conns[events[i].data.u64];
      uint32_t ev = events[i].events;
      bool was_pending = c->state == kConnecting || c->state == kPriming;
      if (c->state == kConnecting) {
        conn_connect_done(w, c);
      } else if (c->state == kPriming || c->state == kActive) {
        // A primed connection has nothing in flight: any byte or a hang-up is an error.
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(w, c);
        if (c->state == kPriming && (ev & EPOLLOUT)) conn_flush(w, c);
      }
      if (was_pending && c->state != kConnecting && c->state != kPriming) inflight--;
    }
  }
  uint32_t timed_out = 0;
  for (uint32_t i = 0; i < w->nconns; i++) {
    Conn* c = &w->conns[i];
    if (c->state == kActive) {
      w->ready++;
    } else if (c->state != kDead) {
      conn_fail(w, c, kErrConnect);
      timed_out++;
    }
  }
  if (timed_out > 0) {
    report_error("%" PRIu32
                 " connections not established and echoing within --connect-timeout %g s",
                 timed_out, cfg.connect_timeout_s);
  }
}

static void worker_traffic(Worker* w) {
  const uint64_t burst = (uint64_t)cfg.pipeline * cfg.size;
  uint64_t start = now_ns();
  for (uint32_t i = 0; i < w->nconns; i++) {
    Conn* c = &w->conns[i];
    if (c->state != kActive) continue;
    for (uint32_t d = 0; d < cfg.pipeline; d++) w->stamps[(size_t)i * cfg.pipeline + d] = start;
    c->tx_end += burst;  // after the priming message
    conn_flush(w, c);
  }
  struct epoll_event* events = calloc(kMaxEvents, sizeof *events);
  if (events == NULL) {
    report_error("out of memory");
    return;
  }
  for (;;) {
    uint64_t now = now_ns();
    if (now >= g_t_end || w->ready == 0) break;
    uint64_t wait_ms = (g_t_end - now + 999999) / 1000000;
    int n = epoll_wait(w->epfd, events, kMaxEvents, wait_ms < 100 ? (int)wait_ms : 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      report_error("epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      Conn* c = &w->conns[events[i].data.u64];
      uint32_t ev = events[i].events;
      if (c->state != kActive) continue;
      if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(w, c);
      if (c->state == kActive && (ev & EPOLLOUT)) conn_flush(w, c);
    }
  }
  free(events);
}

static void* worker_main(void* arg) {
  Worker* w = arg;
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (w->epfd < 0) {
    report_error("epoll_create1: %s", strerror(errno));
    for (uint32_t i = 0; i < w->nconns; i++) conn_fail(w, &w->conns[i], kErrConnect);
  } else {
    worker_connect(w);
  }
  pthread_barrier_wait(&g_barrier);  // everyone connected
  pthread_barrier_wait(&g_barrier);  // main has set the clock
  if (w->epfd >= 0) worker_traffic(w);
  for (uint32_t i = 0; i < w->nconns; i++) {
    if (w->conns[i].fd >= 0) close(w->conns[i].fd);
    w->conns[i].fd = -1;
  }
  if (w->epfd >= 0) close(w->epfd);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// Server sampling (/proc)

typedef struct {
  bool ok;
  double cpu_s;
  long rss_kb;
} ProcSample;

static ProcSample sample_server(long pid) {
  ProcSample s = {.ok = false, .cpu_s = 0, .rss_kb = -1};
  char path[64];
  char buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == NULL) return s;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');  // the command name may contain spaces and parentheses
  unsigned long utime = 0, stime = 0;
  if (p == NULL ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) {
    return s;
  }
  long ticks = sysconf(_SC_CLK_TCK);
  s.cpu_s = (double)(utime + stime) / (double)(ticks > 0 ? ticks : 100);
  s.ok = true;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  f = fopen(path, "re");
  if (f != NULL) {
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
      if (sscanf(line, "VmRSS: %ld kB", &s.rss_kb) == 1) break;
    }
    fclose(f);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char** argv) {
  parse_args(argc, argv);
  check_fd_limit();
  signal(SIGPIPE, SIG_IGN);

  struct timespec seed_ts;
  clock_gettime(CLOCK_REALTIME, &seed_ts);
  uint64_t seed = (uint64_t)seed_ts.tv_nsec ^ ((uint64_t)seed_ts.tv_sec << 32) ^ (uint64_t)getpid();
  pad_init(seed);

  const uint32_t threads = cfg.threads;
  Worker* workers = calloc(threads, sizeof *workers);
  Conn* conns = calloc(cfg.connections, sizeof *conns);
  uint64_t* stamps = calloc((size_t)cfg.connections * cfg.pipeline, sizeof *stamps);
  uint8_t* buffers = malloc((size_t)threads * 3 * kChunk);
  if (workers == NULL || conns == NULL || stamps == NULL || buffers == NULL) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  for (uint32_t i = 0; i < cfg.connections; i++) {
    uint64_t st = seed ^ ((uint64_t)i * 0xD1B54A32D192ED03u);
    conns[i] = (Conn){.fd = -1, .state = kIdle, .id = i, .key = splitmix64(&st)};
  }
  for (uint32_t t = 0; t < threads; t++) {
    Worker* w = &workers[t];
    uint32_t lo = (uint32_t)((uint64_t)cfg.connections * t / threads);
    uint32_t hi = (uint32_t)((uint64_t)cfg.connections * (t + 1) / threads);
    w->epfd = -1;
    w->nconns = hi - lo;
    w->conns = conns + lo;
    w->stamps = stamps + (size_t)lo * cfg.pipeline;
    w->rxbuf = buffers + (size_t)t * 3 * kChunk;
    w->txbuf = w->rxbuf + kChunk;
    w->expbuf = w->txbuf + kChunk;
  }

  if (pthread_barrier_init(&g_barrier, NULL, threads + 1) != 0) {
    fprintf(stderr, "loadgen: pthread_barrier_init failed\n");
    return 1;
  }
  uint64_t connect_begin = now_ns();
  uint32_t started = 0;
  for (; started < threads; started++) {
    int rc = pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]);
    if (rc != 0) {
      // The barrier counts every thread: without all of them nothing can proceed.
      fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
      _exit(1);
    }
  }
  pthread_barrier_wait(&g_barrier);
  uint64_t connect_total_ns = now_ns() - connect_begin;
  uint32_t connected = 0, handshakes = 0;
  for (uint32_t t = 0; t < threads; t++) {
    connected += workers[t].ready;
    handshakes += workers[t].connected;
  }

  g_t_start = now_ns();
  g_t_warm = g_t_start + (uint64_t)(cfg.warmup_s * 1e9);
  g_t_end = g_t_warm + (uint64_t)(cfg.duration_s * 1e9);
  if (connected == 0) g_t_warm = g_t_end = g_t_start;  // nothing to measure
  pthread_barrier_wait(&g_barrier);

  ProcSample before = {.ok = false, .cpu_s = 0, .rss_kb = -1}, after = before;
  if (cfg.server_pid > 0 && connected > 0) {
    sleep_until(g_t_warm);
    before = sample_server(cfg.server_pid);
    if (!before.ok) fprintf(stderr, "loadgen: cannot read /proc/%ld/stat\n", cfg.server_pid);
    sleep_until(g_t_end);
    after = sample_server(cfg.server_pid);
  }
  for (uint32_t t = 0; t < threads; t++) pthread_join(workers[t].thread, NULL);
  pthread_barrier_destroy(&g_barrier);

  // Aggregate.
  static Hist hist;
  uint64_t messages = 0, errors[3] = {0, 0, 0}, connect_sum = 0, connect_max = 0;
  for (uint32_t t = 0; t < threads; t++) {
    Worker* w = &workers[t];
    messages += w->messages;
    for (int k = 0; k < 3; k++) errors[k] += w->errors[k];
    connect_sum += w->connect_ns_sum;
    if (w->connect_ns_max > connect_max) connect_max = w->connect_ns_max;
    hist_merge(&hist, &w->hist);
  }
  double window_s = (double)(g_t_end - g_t_warm) / 1e9;
  double rate = window_s > 0 ? (double)messages / window_s : 0;
  double us[5] = {hist_quantile(&hist, 0.50) / 1e3, hist_quantile(&hist, 0.90) / 1e3,
                  hist_quantile(&hist, 0.99) / 1e3, hist_quantile(&hist, 0.999) / 1e3,
                  hist.max / 1e3};
  double mean_us = hist.count ? hist.sum / (double)hist.count / 1e3 : 0;
  double connect_mean_ms = handshakes ? (double)connect_sum / handshakes / 1e6 : 0;
  bool have_cpu = before.ok && after.ok;
  double server_cpu = have_cpu ? after.cpu_s - before.cpu_s : 0;

  if (cfg.json) {
    char cpu[32] = "null", rss[32] = "null", rss0[32] = "null";
    if (have_cpu) snprintf(cpu, sizeof cpu, "%.3f", server_cpu);
    if (after.rss_kb >= 0) snprintf(rss, sizeof rss, "%ld", after.rss_kb);
    if (before.rss_kb >= 0) snprintf(rss0, sizeof rss0, "%ld", before.rss_kb);
    printf("{\"connections\":%" PRIu32 ",\"connected\":%" PRIu32 ",\"size\":%" PRIu32
           ",\"pipeline\":%" PRIu32 ",\"threads\":%" PRIu32 ",\"sources\":%" PRIu32
           ",\"warmup_s\":%g,\"duration_s\":%g,\"messages\":%" PRIu64
           ",\"msgs_per_sec\":%.1f,\"bytes_per_sec\":%.1f,"
           "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
           "\"mean\":%.1f},"
           "\"connect_ms\":{\"total\":%.1f,\"mean\":%.3f,\"max\":%.3f},"
           "\"errors\":{\"connect\":%" PRIu64 ",\"reset\":%" PRIu64 ",\"verify\":%" PRIu64
           "},"
           "\"server_cpu_s\":%s,\"server_rss_kb\":%s,\"server_rss_kb_start\":%s}\n",
           cfg.connections, connected, cfg.size, cfg.pipeline, threads, cfg.sources, cfg.warmup_s,
           cfg.duration_s, messages, rate, rate * cfg.size, us[0], us[1], us[2], us[3], us[4],
           mean_us, connect_total_ns / 1e6, connect_mean_ms, connect_max / 1e6, errors[0],
           errors[1], errors[2], cpu, rss, rss0);
  } else {
    printf("loadgen %s port %" PRIu32 ": %" PRIu32 " connections (%" PRIu32 " connected), %" PRIu32
           " B x %" PRIu32 " in flight, %" PRIu32 " thread(s), %" PRIu32
           " source(s), warmup %g s, measured %g s\n",
           cfg.host, cfg.port, cfg.connections, connected, cfg.size, cfg.pipeline, threads,
           cfg.sources, cfg.warmup_s, cfg.duration_s);
    printf("  messages  %" PRIu64 "  (%.0f msg/s, %.2f MB/s echoed)\n", messages, rate,
           rate * cfg.size / 1e6);
    printf("  latency   p50 %.1f  p90 %.1f  p99 %.1f  p999 %.1f  max %.1f  mean %.1f us\n", us[0],
           us[1], us[2], us[3], us[4], mean_us);
    printf("  connect   all echoing after %.1f ms; handshake mean %.3f ms, max %.3f ms\n",
           connect_total_ns / 1e6, connect_mean_ms, connect_max / 1e6);
    printf("  errors    connect %" PRIu64 ", reset %" PRIu64 ", verify %" PRIu64 "\n", errors[0],
           errors[1], errors[2]);
    if (have_cpu) {
      printf("  server    cpu %.2f s (%.0f msg per cpu-s), rss %ld kB\n", server_cpu,
             server_cpu > 0 ? (double)messages / server_cpu : 0.0, after.rss_kb);
    }
  }
  fflush(stdout);

  free(buffers);
  free(stamps);
  free(conns);
  free(workers);
  bool failed = errors[0] + errors[1] + errors[2] > 0 || messages == 0;
  return failed ? 1 : 0;
}
