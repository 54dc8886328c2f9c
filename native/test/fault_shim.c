// Test-only syscall fault injection: an LD_PRELOAD library that makes the socket, poll and
// io_uring calls of the iomux addons fail now and then, the way a loaded kernel does. Only calls
// made from a loaded `*.node` file are touched (the caller's return address is looked up in the
// loaded objects), so Node, libuv and the test's IPC keep working. The fault tests
// (packages/core/test/faults/) build it and run a child process under it; never the test runner.
//
// Environment (read once):
//   IOMUX_FAULT_SEED       decisions are a pure function of (seed, call, n-th call of that kind),
//                          so a seed replays the same faults for the same call sequence.
//   IOMUX_FAULT_RATE       percent of eligible calls faulted (default 10).
//   IOMUX_FAULT_KINDS      comma list (default eintr,eagain,short):
//                            retryable: eintr, eagain (only where the kernel could say it: a
//                            non-blocking socket or MSG_DONTWAIT), short (a real partial
//                            transfer: fewer bytes of a stream, fewer messages of a batch);
//                            fatal to one socket: enomem, enobufs, econnreset.
//   IOMUX_FAULT_FATAL_MAX  at most this many fatal faults in the process (default 4).
//   IOMUX_FAULT_ENGINE     `ERRNO@N`, e.g. `ENOMEM@300`: from the N-th poll call (epoll_wait,
//                          select, io_uring_enter) on, every poll call of that kind fails with
//                          ERRNO, an engine-level failure; the backend a runtime fallback moves to
//                          polls with another call and is spared.
//   IOMUX_FAULT_GATE       a path: faults (and decisions) only while that file exists, so a test
//                          sets up its listeners first, lets faults loose, and checks afterwards
//                          that everything serves again.
//   IOMUX_FAULT_LOG        file that gets one line per injected fault: `call fd kind`.
//   IOMUX_FAULT_SENDS_FROM N: a send on a socket is eligible only from that fd's N-th send (counted
//                          while the gate is open) on, so the first send of a write (the try-write
//                          from JS) goes through and the faults hit the engine's queue flushes.
//                          Only stream and datagram sends are faulted then.
//
// What each call can get, as the kernel can return it:
//   send, sendmsg, writev, write (sockets): EINTR, EAGAIN, short; ENOBUFS, ENOMEM, ECONNRESET
//   recv, recvmsg, readv, read (sockets):   EINTR, EAGAIN and short (streams); ENOMEM, ECONNRESET
//   accept, accept4:                        EINTR, EAGAIN; ENOMEM, ENOBUFS, ECONNABORTED (the
//                                           pending connection stays in the backlog)
//   connect:                                EINTR (after the connect started, as the kernel
//                                           does); ENOMEM, ENOBUFS, ECONNREFUSED
//   epoll_wait, select, io_uring_enter:     EINTR; io_uring_enter also EAGAIN/EBUSY
//   epoll_ctl:                              ENOMEM
//   recvmmsg, sendmmsg:                     EINTR; short (fewer messages; receives only with
//                                           MSG_WAITFORONE); EAGAIN (sends); ENOMEM, ENOBUFS
// Short counts on datagram sockets would truncate a datagram, which the kernel never does
// silently, so datagrams only ever get whole-message short counts.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum Kind { kNone, kEintr, kEagain, kShort, kEnomem, kEnobufs, kEconnreset };
static const char* const kKindNames[] = {"none",   "eintr",   "eagain",    "short",
                                         "enomem", "enobufs", "econnreset"};
#define KIND_COUNT 7

// Which calls each counter (and so each decision sequence) belongs to.
enum Call {
  kSend,
  kRecv,
  kAccept,
  kConnect,
  kEpollWait,
  kEpollCtl,
  kSelect,
  kUringEnter,
  kRecvmmsg,
  kSendmmsg,
  kCallCount
};

static struct {
  uint64_t seed;
  unsigned rate;
  unsigned kinds;  // bit per enum Kind
  int fatal_left;
  int engine_errno;
  long engine_at;
  int log_fd;
  const char* gate;
  long sends_from;
} config;
#define MAX_COUNTED_FD 65536
static long sends_by_fd[MAX_COUNTED_FD];
static long counters[kCallCount];
static long poll_calls;
static int engine_failing = -1;  // the enum Call whose polls fail, once IOMUX_FAULT_ENGINE hit
static pthread_once_t config_once = PTHREAD_ONCE_INIT;

#define REAL(name) ((__typeof__(&name))real_symbol(#name))

static void* real_symbol(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == NULL) abort();  // a libc without the call: nothing sensible to do in a test shim
  return fn;
}

static int errno_by_name(const char* name) {
  static const struct {
    const char* name;
    int value;
  } names[] = {{"ENOMEM", ENOMEM}, {"EIO", EIO},       {"EINVAL", EINVAL},
               {"EBADF", EBADF},   {"EFAULT", EFAULT}, {"ENOBUFS", ENOBUFS}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
    if (strcmp(names[i].name, name) == 0) return names[i].value;
  }
  return EIO;
}

static void read_config(void) {
  const char* seed = getenv("IOMUX_FAULT_SEED");
  const char* rate = getenv("IOMUX_FAULT_RATE");
  const char* kinds = getenv("IOMUX_FAULT_KINDS");
  const char* fatal = getenv("IOMUX_FAULT_FATAL_MAX");
  const char* engine = getenv("IOMUX_FAULT_ENGINE");
  const char* log = getenv("IOMUX_FAULT_LOG");
  config.seed = seed != NULL ? strtoull(seed, NULL, 10) : 1;
  config.rate = rate != NULL ? (unsigned)strtoul(rate, NULL, 10) : 10;
  config.fatal_left = fatal != NULL ? atoi(fatal) : 4;
  if (kinds == NULL) kinds = "eintr,eagain,short";
  for (int k = 1; k < KIND_COUNT; ++k) {
    const char* at = strstr(kinds, kKindNames[k]);
    if (at != NULL) config.kinds |= 1u << k;
  }
  if (engine != NULL) {
    const char* at = strchr(engine, '@');
    char name[32] = {0};
    size_t len = at != NULL ? (size_t)(at - engine) : strlen(engine);
    if (len >= sizeof(name)) len = sizeof(name) - 1;
    memcpy(name, engine, len);
    config.engine_errno = errno_by_name(name);
    config.engine_at = at != NULL ? atol(at + 1) : 1;
  }
  config.gate = getenv("IOMUX_FAULT_GATE");
  const char* sends_from = getenv("IOMUX_FAULT_SENDS_FROM");
  config.sends_from = sends_from != NULL ? atol(sends_from) : 0;
  config.log_fd = log != NULL ? open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
}

// True while faults may happen (see IOMUX_FAULT_GATE).
static int faults_armed(void) {
  pthread_once(&config_once, read_config);
  return config.gate == NULL || access(config.gate, F_OK) == 0;
}

// ---- Is the caller an addon? ----

// Executable ranges of the loaded objects, each marked addon (`*.node`) or not. Refreshed when an
// address falls in none of them (an object loaded since).
#define MAX_RANGES 1024
static struct {
  uintptr_t start, end;
  int addon;
} ranges[MAX_RANGES];
static int range_count;
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;

static int ends_with(const char* s, const char* suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int add_object(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  (void)data;
  int addon = info->dlpi_name != NULL && ends_with(info->dlpi_name, ".node");
  for (int i = 0; i < info->dlpi_phnum && range_count < MAX_RANGES; ++i) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || (ph->p_flags & PF_X) == 0) continue;
    ranges[range_count].start = info->dlpi_addr + ph->p_vaddr;
    ranges[range_count].end = ranges[range_count].start + ph->p_memsz;
    ranges[range_count].addon = addon;
    ++range_count;
  }
  return 0;
}

static int lookup(uintptr_t pc) {
  for (int i = 0; i < range_count; ++i) {
    if (pc >= ranges[i].start && pc < ranges[i].end) return ranges[i].addon;
  }
  return -1;
}

static int from_addon(const void* return_address) {
  uintptr_t pc = (uintptr_t)return_address;
  pthread_mutex_lock(&ranges_lock);
  int found = lookup(pc);
  if (found < 0) {
    range_count = 0;
    dl_iterate_phdr(add_object, NULL);
    found = lookup(pc);
  }
  pthread_mutex_unlock(&ranges_lock);
  return found == 1;
}

// ---- Decisions ----

static uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The fault for the next call of `call`, among the kinds `allowed` (bits) that are enabled; sets
// *roll to a second random number (the size of a short count).
static enum Kind decide(enum Call call, unsigned allowed, uint64_t* roll) {
  *roll = 0;
  if (!faults_armed()) return kNone;
  if (config.sends_from > 0 && call != kSend) return kNone;
  long n = __atomic_fetch_add(&counters[call], 1, __ATOMIC_RELAXED);
  uint64_t r = mix(mix(config.seed) + ((uint64_t)call << 40) + (uint64_t)n);
  *roll = mix(r);
  unsigned usable = allowed & config.kinds;
  if (usable == 0 || r % 100 >= config.rate) return kNone;
  int choices[KIND_COUNT], count = 0;
  for (int k = 1; k < KIND_COUNT; ++k) {
    if ((usable & (1u << k)) != 0) choices[count++] = k;
  }
  enum Kind kind = (enum Kind)choices[(r >> 32) % (uint64_t)count];
  if (kind >= kEnomem && __atomic_fetch_sub(&config.fatal_left, 1, __ATOMIC_RELAXED) <= 0)
    return kNone;
  return kind;
}

static void log_fault(const char* call, int fd, const char* what) {
  if (config.log_fd < 0) return;
  char line[96];
  int len = snprintf(line, sizeof(line), "%s %d %s\n", call, fd, what);
  if (len > 0) (void)REAL(write)(config.log_fd, line, (size_t)len);
}

#define BIT(k) (1u << (k))
#define RETRYABLE (BIT(kEintr) | BIT(kEagain) | BIT(kShort))

static int is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int is_stream(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

static int may_block(int fd, int flags) {
  return (flags & MSG_DONTWAIT) == 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0;
}

// Kinds a transfer on fd may get. A receive that says EAGAIN while data is queued is not something
// the kernel does, and a waiter armed once for readiness (io_uring's multishot poll of a UDP
// socket) would rightly wait for the next arrival: receives get EAGAIN only on streams, where
// every engine asks again (level-triggered readiness).
static unsigned transfer_kinds(int fd, int flags, int sending) {
  unsigned kinds = BIT(kEintr) | BIT(kEnomem);
  int stream = is_stream(fd);
  if (!may_block(fd, flags) && (sending || stream)) kinds |= BIT(kEagain);
  if (stream) kinds |= BIT(kShort) | BIT(kEconnreset);
  if (sending) kinds |= BIT(kEnobufs);
  return kinds;
}

static int kind_errno(enum Kind kind) {
  switch (kind) {
    case kEintr:
      return EINTR;
    case kEagain:
      return EAGAIN;
    case kEnomem:
      return ENOMEM;
    case kEnobufs:
      return ENOBUFS;
    case kEconnreset:
      return ECONNRESET;
    default:
      return EIO;
  }
}

// A prefix of `total` bytes, at least 1 and less than total (total > 1).
static size_t short_length(size_t total, uint64_t roll) { return 1 + (size_t)(roll % (total - 1)); }

// Copies iov into out (at most `max` entries) cut to `keep` bytes; returns the entry count.
static int cut_iov(const struct iovec* iov, int count, size_t keep, struct iovec* out, int max) {
  int n = 0;
  for (int i = 0; i < count && n < max && keep > 0; ++i) {
    out[n] = iov[i];
    if (out[n].iov_len > keep) out[n].iov_len = keep;
    keep -= out[n].iov_len;
    ++n;
  }
  return n;
}

static size_t iov_total(const struct iovec* iov, size_t count) {
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) total += iov[i].iov_len;
  return total;
}

#define MAX_CUT_IOV 64

// A fault for a byte transfer: returns 1 and sets *result when the call must not run as asked;
// for a short count, *cut_len gets the shortened length (0: run unchanged).
static int transfer_fault(enum Call call, const char* name, int fd, int flags, int sending,
                          size_t total, size_t* cut_len, ssize_t* result) {
  *cut_len = 0;
  if (sending && config.sends_from > 0 && faults_armed()) {
    if (fd < 0 || fd >= MAX_COUNTED_FD) return 0;
    if (__atomic_add_fetch(&sends_by_fd[fd], 1, __ATOMIC_RELAXED) < config.sends_from) return 0;
  }
  uint64_t roll;
  enum Kind kind = decide(call, transfer_kinds(fd, flags, sending), &roll);
  if (kind == kNone) return 0;
  if (kind == kShort) {
    if (total < 2) return 0;
    *cut_len = short_length(total, roll);
    log_fault(name, fd, "short");
    return 0;
  }
  log_fault(name, fd, kKindNames[kind]);
  errno = kind_errno(kind);
  *result = -1;
  return 1;
}

// ---- Stream and datagram transfers ----

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(sendmsg)(fd, msg, flags);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kSend, "sendmsg", fd, flags, 1, iov_total(msg->msg_iov, msg->msg_iovlen), &cut,
                     &result))
    return result;
  if (cut == 0) return REAL(sendmsg)(fd, msg, flags);
  struct iovec iov[MAX_CUT_IOV];
  struct msghdr shorter = *msg;
  shorter.msg_iov = iov;
  shorter.msg_iovlen = (size_t)cut_iov(msg->msg_iov, (int)msg->msg_iovlen, cut, iov, MAX_CUT_IOV);
  return REAL(sendmsg)(fd, &shorter, flags);
}

ssize_t send(int fd, const void* buf, size_t len, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(send)(fd, buf, len, flags);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kSend, "send", fd, flags, 1, len, &cut, &result)) return result;
  return REAL(send)(fd, buf, cut != 0 ? cut : len, flags);
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  if (!from_addon(__builtin_return_address(0)) || !is_socket(fd))
    return REAL(writev)(fd, iov, count);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kSend, "writev", fd, 0, 1, iov_total(iov, (size_t)count), &cut, &result))
    return result;
  if (cut == 0) return REAL(writev)(fd, iov, count);
  struct iovec shorter[MAX_CUT_IOV];
  return REAL(writev)(fd, shorter, cut_iov(iov, count, cut, shorter, MAX_CUT_IOV));
}

ssize_t write(int fd, const void* buf, size_t len) {
  if (!from_addon(__builtin_return_address(0)) || !is_socket(fd)) return REAL(write)(fd, buf, len);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kSend, "write", fd, 0, 1, len, &cut, &result)) return result;
  return REAL(write)(fd, buf, cut != 0 ? cut : len);
}

ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(recvmsg)(fd, msg, flags);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kRecv, "recvmsg", fd, flags, 0, iov_total(msg->msg_iov, msg->msg_iovlen), &cut,
                     &result))
    return result;
  if (cut == 0) return REAL(recvmsg)(fd, msg, flags);
  struct iovec iov[MAX_CUT_IOV];
  struct iovec* original = msg->msg_iov;
  size_t original_len = msg->msg_iovlen;
  msg->msg_iov = iov;
  msg->msg_iovlen = (size_t)cut_iov(original, (int)original_len, cut, iov, MAX_CUT_IOV);
  ssize_t n = REAL(recvmsg)(fd, msg, flags);
  msg->msg_iov = original;
  msg->msg_iovlen = original_len;
  return n;
}

ssize_t recv(int fd, void* buf, size_t len, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(recv)(fd, buf, len, flags);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kRecv, "recv", fd, flags, 0, len, &cut, &result)) return result;
  return REAL(recv)(fd, buf, cut != 0 ? cut : len, flags);
}

ssize_t readv(int fd, const struct iovec* iov, int count) {
  if (!from_addon(__builtin_return_address(0)) || !is_socket(fd))
    return REAL(readv)(fd, iov, count);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kRecv, "readv", fd, 0, 0, iov_total(iov, (size_t)count), &cut, &result))
    return result;
  if (cut == 0) return REAL(readv)(fd, iov, count);
  struct iovec shorter[MAX_CUT_IOV];
  return REAL(readv)(fd, shorter, cut_iov(iov, count, cut, shorter, MAX_CUT_IOV));
}

ssize_t read(int fd, void* buf, size_t len) {
  if (!from_addon(__builtin_return_address(0)) || !is_socket(fd)) return REAL(read)(fd, buf, len);
  size_t cut;
  ssize_t result;
  if (transfer_fault(kRecv, "read", fd, 0, 0, len, &cut, &result)) return result;
  return REAL(read)(fd, buf, cut != 0 ? cut : len);
}

// Batches: a short count is fewer messages, each whole.
// A non-blocking recvmmsg returns fewer messages than asked only when the queue ran empty (or an
// error is pending), which the engines rely on: receives only get short counts where they may
// wait (MSG_WAITFORONE returns what is there after the first), and EAGAIN never (see
// transfer_kinds).
static int batch_fault(enum Call call, const char* name, int fd, unsigned vlen, int flags,
                       unsigned* shorter, int* result) {
  uint64_t roll;
  unsigned kinds = BIT(kEintr) | BIT(kEnomem) | BIT(kEnobufs);
  if (call == kSendmmsg || (flags & MSG_WAITFORONE) != 0) kinds |= BIT(kShort);
  if (call == kSendmmsg && !may_block(fd, flags)) kinds |= BIT(kEagain);
  enum Kind kind = decide(call, kinds, &roll);
  *shorter = vlen;
  if (kind == kNone || (kind == kShort && vlen < 2)) return 0;
  log_fault(name, fd, kKindNames[kind]);
  if (kind == kShort) {
    *shorter = (unsigned)short_length(vlen, roll);
    return 0;
  }
  errno = kind_errno(kind);
  *result = -1;
  return 1;
}

int recvmmsg(int fd, struct mmsghdr* msgs, unsigned vlen, int flags, struct timespec* timeout) {
  if (!from_addon(__builtin_return_address(0)))
    return REAL(recvmmsg)(fd, msgs, vlen, flags, timeout);
  unsigned n;
  int result;
  if (batch_fault(kRecvmmsg, "recvmmsg", fd, vlen, flags, &n, &result)) return result;
  return REAL(recvmmsg)(fd, msgs, n, flags, timeout);
}

int sendmmsg(int fd, struct mmsghdr* msgs, unsigned vlen, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(sendmmsg)(fd, msgs, vlen, flags);
  unsigned n;
  int result;
  if (batch_fault(kSendmmsg, "sendmmsg", fd, vlen, flags, &n, &result)) return result;
  return REAL(sendmmsg)(fd, msgs, n, flags);
}

// ---- Accept and connect ----

static int accept_fault(int fd, int flags) {
  uint64_t roll;
  unsigned kinds = BIT(kEintr) | BIT(kEnomem) | BIT(kEnobufs) | BIT(kEconnreset);
  if ((flags & SOCK_NONBLOCK) != 0 || !may_block(fd, 0)) kinds |= BIT(kEagain);
  enum Kind kind = decide(kAccept, kinds, &roll);
  if (kind == kNone) return 0;
  log_fault("accept", fd, kKindNames[kind]);
  return kind == kEconnreset ? ECONNABORTED : kind_errno(kind);
}

int accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  if (!from_addon(__builtin_return_address(0))) return REAL(accept4)(fd, addr, len, flags);
  int err = accept_fault(fd, 0);
  if (err != 0) {
    errno = err;
    return -1;
  }
  return REAL(accept4)(fd, addr, len, flags);
}

int accept(int fd, struct sockaddr* addr, socklen_t* len) {
  if (!from_addon(__builtin_return_address(0))) return REAL(accept)(fd, addr, len);
  int err = accept_fault(fd, 0);
  if (err != 0) {
    errno = err;
    return -1;
  }
  return REAL(accept)(fd, addr, len);
}

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  if (!from_addon(__builtin_return_address(0))) return REAL(connect)(fd, addr, len);
  uint64_t roll;
  enum Kind kind =
      decide(kConnect, BIT(kEintr) | BIT(kEnomem) | BIT(kEnobufs) | BIT(kEconnreset), &roll);
  if (kind == kNone) return REAL(connect)(fd, addr, len);
  if (kind == kEintr) {
    // The kernel goes on connecting in the background after an interrupted connect().
    int rc = REAL(connect)(fd, addr, len);
    if (rc == 0 || errno != EINPROGRESS) return rc;
    log_fault("connect", fd, "eintr");
    errno = EINTR;
    return -1;
  }
  log_fault("connect", fd, kKindNames[kind]);
  errno = kind == kEconnreset ? ECONNREFUSED : kind_errno(kind);
  return -1;
}

// ---- Polls ----

// The engine-level fault (IOMUX_FAULT_ENGINE): from the N-th poll call on, polls of that call's
// kind fail.
static int engine_fault(enum Call call, const char* name, int fd) {
  if (!faults_armed() || config.engine_errno == 0) return 0;
  int failing = __atomic_load_n(&engine_failing, __ATOMIC_RELAXED);
  if (failing < 0) {
    if (__atomic_add_fetch(&poll_calls, 1, __ATOMIC_RELAXED) < config.engine_at) return 0;
    int none = -1;
    if (__atomic_compare_exchange_n(&engine_failing, &none, (int)call, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
      log_fault(name, fd, "engine");
    failing = __atomic_load_n(&engine_failing, __ATOMIC_RELAXED);
  }
  return failing == (int)call ? config.engine_errno : 0;
}

static int poll_fault(enum Call call, const char* name, int fd, unsigned kinds) {
  int err = engine_fault(call, name, fd);
  if (err != 0) return err;
  uint64_t roll;
  enum Kind kind = decide(call, kinds, &roll);
  if (kind == kNone) return 0;
  log_fault(name, fd, kKindNames[kind]);
  return kind_errno(kind);
}

int epoll_wait(int epfd, struct epoll_event* events, int max, int timeout) {
  if (!from_addon(__builtin_return_address(0))) return REAL(epoll_wait)(epfd, events, max, timeout);
  int err = poll_fault(kEpollWait, "epoll_wait", epfd, BIT(kEintr));
  if (err != 0) {
    errno = err;
    return -1;
  }
  return REAL(epoll_wait)(epfd, events, max, timeout);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event* event) {
  if (!from_addon(__builtin_return_address(0)) || op == EPOLL_CTL_DEL)
    return REAL(epoll_ctl)(epfd, op, fd, event);
  uint64_t roll;
  enum Kind kind = decide(kEpollCtl, BIT(kEnomem), &roll);
  if (kind == kNone) return REAL(epoll_ctl)(epfd, op, fd, event);
  log_fault(op == EPOLL_CTL_ADD ? "epoll_ctl(ADD)" : "epoll_ctl(MOD)", fd, kKindNames[kind]);
  errno = ENOMEM;
  return -1;
}

int select(int nfds, fd_set* readable, fd_set* writable, fd_set* except, struct timeval* timeout) {
  if (!from_addon(__builtin_return_address(0)))
    return REAL(select)(nfds, readable, writable, except, timeout);
  int err = poll_fault(kSelect, "select", -1, BIT(kEintr));
  if (err != 0) {
    errno = err;
    return -1;
  }
  return REAL(select)(nfds, readable, writable, except, timeout);
}

// The io_uring backend enters the ring with syscall(__NR_io_uring_enter, ...). syscall() is
// variadic; like glibc's own wrapper, this one passes on six argument registers whatever the
// caller put there.
long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
  long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
  va_end(ap);
  if (number == __NR_io_uring_enter && from_addon(__builtin_return_address(0))) {
    int err = poll_fault(kUringEnter, "io_uring_enter", (int)a1, BIT(kEintr) | BIT(kEagain));
    if (err != 0) {
      // EAGAIN stands for both of the kernel's "no room now" answers.
      errno = (err == EAGAIN && (counters[kUringEnter] & 1) != 0) ? EBUSY : err;
      return -1;
    }
  }
  return REAL(syscall)(number, a1, a2, a3, a4, a5, a6);
}
