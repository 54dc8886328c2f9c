// The platform layer: every call of the shared native core that differs between platform families,
// declared once. One file per family implements all of it, and exactly one of them compiles to
// anything on a given platform (each is guarded by its own #if, so a build may list them all):
//   platform_linux.cc   Linux            eventfd, accept4, MSG_NOSIGNAL, recvmmsg/sendmmsg, timerfd
//   platform_bsd.cc     macOS, FreeBSD   pipe, accept + fcntl, SO_NOSIGPIPE, EVFILT_TIMER
//   platform_win32.cc   Windows          loopback UDP wake socket, Winsock
//   platform_posix.cc   every POSIX family: what the three above share (fstat, fcntl)
// The rest of native/ and of the backends stays free of platform #ifdefs: it calls these.
//
// Rules: every function returns 0 (or a count) on success and -errno on failure, retries EINTR
// itself unless it says otherwise, and keeps errno as it found it only where it says so. A facility
// a platform does not have is reported, never faked: -ENOSYS (or a k* constant saying so).
#ifndef IOMUX_PLATFORM_H_
#define IOMUX_PLATFORM_H_

#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#if defined(__linux__)
#define IOMUX_PLATFORM_LINUX 1
#elif defined(__APPLE__) || defined(__FreeBSD__)
#define IOMUX_PLATFORM_BSD 1
#elif defined(_WIN32)
#define IOMUX_PLATFORM_WIN32 1
#else
#error "iomux: no platform layer for this platform (see native/src/platform.h)"
#endif

namespace iomux {
namespace platform {

// ---- Constants: compile-time, so the hot path pays nothing for the seam ----

#if defined(IOMUX_PLATFORM_LINUX)
constexpr int kSendNoSignal = MSG_NOSIGNAL;
constexpr bool kShutdownWakesAccept = true;
constexpr bool kHasBatchedDatagrams = true;
constexpr bool kHasPreciseTimer = true;
#elif defined(IOMUX_PLATFORM_BSD)
#if defined(__APPLE__)
constexpr int kSendNoSignal = 0;  // macOS has no MSG_NOSIGNAL: sockets carry SO_NOSIGPIPE
constexpr bool kHasBatchedDatagrams = false;
#else
constexpr int kSendNoSignal = MSG_NOSIGNAL;
constexpr bool kHasBatchedDatagrams = true;  // FreeBSD 11+ has recvmmsg/sendmmsg
#endif
constexpr bool kShutdownWakesAccept = false;
constexpr bool kHasPreciseTimer = true;
#elif defined(IOMUX_PLATFORM_WIN32)
constexpr int kSendNoSignal = 0;  // Winsock never raises SIGPIPE
constexpr bool kShutdownWakesAccept = false;
constexpr bool kHasBatchedDatagrams = false;
constexpr bool kHasPreciseTimer = false;
#endif
// kSendNoSignal: the flag every send*() of the core passes to suppress SIGPIPE (MSG_NOSIGNAL, or 0
//   where open_socket()/accept_socket() set SO_NOSIGPIPE on the socket instead).
// kShutdownWakesAccept: whether shutdown() of a listener wakes a thread blocked in accept() on it.
//   Where it does not, blocking_io keeps listeners non-blocking and waits in bounded slices.
// kHasBatchedDatagrams: receive_messages / send_messages are one system call (recvmmsg/sendmmsg)
//   rather than a loop of recvmsg/sendmsg.
// kHasPreciseTimer: OneShotTimer works here; where it does not, the glue exports no PreciseTimer.

// ---- Environment ----

// Whether the environment variable `name` is set to `value` now. Node writes process.env to the
// OS environment; the Windows CRT's getenv reads a copy taken at start-up, so there the OS is
// asked (GetEnvironmentVariableA, in platform_win32.cc).
#if defined(IOMUX_PLATFORM_WIN32)
bool env_is(const char* name, const char* value);
#else
inline bool env_is(const char* name, const char* value) {
  const char* set = std::getenv(name);
  if (set == nullptr) return false;
  while (*set != 0 && *set == *value) {
    ++set;
    ++value;
  }
  return *set == *value;
}
#endif

// ---- Wake-up notifier (Notifier in notifier.h is built on these) ----

// The fds of a wake-up notifier: one fd readable while signalled. read_fd == write_fd where the
// platform has a counter object (eventfd); a pipe's two ends elsewhere. Both non-blocking and
// close-on-exec.
struct WakeFds {
  int read_fd = -1;
  int write_fd = -1;
};
int open_wake(WakeFds* out);
// Makes read_fd readable; a notifier already signalled (counter or pipe full) is not an error.
// Keeps errno.
int signal_wake(int write_fd);
// Makes read_fd unreadable again. 0 also when nothing was pending; -EBADF on end-of-file (our
// eventfd or live pipe never gives one: the number now names another file). Keeps errno.
int drain_wake(int read_fd);
// What tells the notifier's read_fd apart from another file that got its number later: fstat's
// st_dev and st_ino on POSIX, the loopback socket's family and bound port on Windows.
struct WakeIdentity {
  unsigned long long first = 0;
  unsigned long long second = 0;
  bool operator==(const WakeIdentity& other) const {
    return first == other.first && second == other.second;
  }
};
// Fills *out for read_fd without reading or writing it. 0, or -EBADF when the number names no
// open file (socket, on Windows). Keeps errno.
int wake_identity(int read_fd, WakeIdentity* out);

// ---- Sockets ----

// A socket of the family and type that is non-blocking, close-on-exec, and never raises SIGPIPE
// (where the platform suppresses it per socket, SO_NOSIGPIPE is set here).
int open_socket(int family, int type);
// Accepts one connection: close-on-exec, SIGPIPE suppressed as above, and non-blocking unless
// `blocking` (blocking_io's threads). Returns the fd or -errno (EAGAIN: none pending). EINTR is
// retried, except when `blocking`: a thread interrupted on purpose (detach) must see it.
int accept_socket(int listen_fd, bool blocking);
// A close-on-exec duplicate of a socket (reactor.adopt of an fd the caller keeps). Returns the new
// fd or -errno; -ENOSYS where sockets are not fds (Windows).
int duplicate_socket(int fd);
// Clears (blocking = true) or sets non-blocking mode: O_NONBLOCK by fcntl on POSIX, FIONBIO on
// Windows. Returns 0 or -errno.
int set_blocking(int fd, bool blocking);

// ---- Datagram batches (datagram.cc and blocking_io's UDP threads) ----

// One datagram of a batch: the message and, after a call, the bytes it carried. mmsghdr where the
// kernel has recvmmsg/sendmmsg; the same two fields otherwise.
#if defined(__APPLE__)
struct MultiMessage {
  msghdr msg_hdr;
  unsigned msg_len;
};
#else
using MultiMessage = ::mmsghdr;
#endif
// Receives up to count datagrams. wait_for_first: block until the first arrives, then take only
// what is queued (MSG_WAITFORONE); otherwise never block. A blocked wait that a signal interrupts
// returns -EINTR (blocking_io's detach relies on it); a non-blocking one retries EINTR. Returns
// how many were received (msg_len and msg_hdr.msg_flags set for each) or -errno for the first.
int receive_messages(int fd, MultiMessage* messages, unsigned count, bool wait_for_first);
// Sends up to count datagrams, blocking for room only when `blocking`. Returns how many were sent
// (msg_len set for each) or -errno when the first could not be: a later one that fails ends the
// call short, and the next call reports it.
int send_messages(int fd, MultiMessage* messages, unsigned count, bool blocking);

// ---- Precise timer (the PreciseTimer of the N-API glue) ----

// A one-shot timer with nanosecond resolution whose fd libuv can watch: readable once it fired.
// A timerfd on Linux, a kqueue holding one EVFILT_TIMER on macOS and FreeBSD.
class OneShotTimer {
 public:
  OneShotTimer() = default;
  OneShotTimer(const OneShotTimer&) = delete;
  OneShotTimer& operator=(const OneShotTimer&) = delete;
  ~OneShotTimer() { close(); }

  int open();
  void close();
  int fd() const { return fd_; }
  // Fires once, ns (>= 1) from now, replacing any earlier deadline.
  int arm(int64_t ns);
  int disarm();
  // After fd() was readable: true when the timer really fired (and clears that), false when a
  // re-arm in between took the expiry back (it fires again later).
  bool consume();

 private:
  int fd_ = -1;
};

// ---- Blocking-thread interruption (blocking_io's detach, see blocking_interrupt.h) ----

// The signals blocking_io may take to interrupt a thread's blocking call, best first, into out
// (at most max). Returns how many: real-time signals where the platform has them, else SIGURG,
// whose default action (ignore) makes an instance we did not send harmless.
int interrupt_candidates(int* out, int max);
// Whether a delivery of the interrupt signal was sent by this
// process to one of its own threads with pthread_kill() (code, pid: its si_code and si_pid).
// Async-signal-safe.
bool sent_by_own_thread(int code, long pid);

// ---- Thread start-up (start_thread in thread_util.cc) ----

// The smallest stack a thread may be given: PTHREAD_STACK_MIN on POSIX; Windows' winpthreads has
// none (64 KiB is its allocation granularity).
// (A function: glibc's PTHREAD_STACK_MIN may be a sysconf call.)
#if defined(IOMUX_PLATFORM_WIN32)
inline size_t min_thread_stack() { return 64 * 1024; }
#else
inline size_t min_thread_stack() { return static_cast<size_t>(PTHREAD_STACK_MIN); }
#endif
// pthread_create, with the new thread starting with every signal blocked except synchronous
// faults (it inherits the mask in force around the create), so Node's main thread keeps receiving
// the process's signals and crash handlers still see faults. Windows has no signal masks: a plain
// pthread_create there. Returns 0 or -errno.
int create_thread_unsignalled(pthread_t* out, const pthread_attr_t* attr, void* (*fn)(void*),
                              void* arg);

// Names the calling thread for top, perf and /proc/<pid>/task/*/comm (at most 15 characters are
// kept). POSIX only; best effort: a failure changes nothing else.
void name_current_thread(const char* name);

// ---- Thread scheduling (setThreadScheduling of the glue) ----

// Sets the calling thread's scheduling policy: "normal", "batch" or "idle" (priority 0), or the
// real-time "fifo" / "rr" at priority 1..99 (threads the caller creates later do not inherit a
// real-time policy). -EINVAL for another name or priority; -EPERM without the privilege a
// real-time policy needs; -ENOSYS where the platform has no per-thread policy of that kind.
int set_thread_scheduling(const char* policy, int priority);

// ---- Thread CPU affinity (setThreadAffinity of the glue) ----

// CPU numbers the affinity calls take: 0 .. kMaxCpus - 1 (glibc's CPU_SETSIZE).
constexpr int kMaxCpus = 1024;
// Pins the calling thread to exactly the n CPUs of cpus (each in [0, kMaxCpus)). -EINVAL when the
// kernel would not run it on every one of them (offline, or outside the process's cpuset), and the
// thread then keeps its previous affinity; -ENOSYS where the platform has no hard affinity.
int set_thread_affinity(const int* cpus, int n);
// Pins every other thread of the process that exists now (V8's platform workers, libuv's pool,
// Worker threads) to exactly the n CPUs of cpus; the calling thread keeps its mask. Returns how
// many threads were pinned (a thread that exits meanwhile is not counted), -EINVAL as above (the
// threads already pinned then stay on a subset of cpus), -ENOSYS where the platform has none.
int set_other_threads_affinity(const int* cpus, int n);
// The CPUs the calling thread may run on now, ascending, into out (room for max). Returns how
// many, or -errno (-ENOSYS as above).
int thread_affinity(int* out, int max);
// The CPUs the calling thread could be pinned to (the online CPUs of its cpuset), like
// thread_affinity. Its own affinity is widened to every CPU for the look-up and then restored.
int allowed_cpus(int* out, int max);

}  // namespace platform
}  // namespace iomux

#endif  // IOMUX_PLATFORM_H_
