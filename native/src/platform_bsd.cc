// The platform layer on macOS and FreeBSD (see platform.h): a pipe for wake-ups, accept plus fcntl
// (FreeBSD: accept4), SO_NOSIGPIPE on macOS (FreeBSD has MSG_NOSIGNAL), a recvmsg/sendmsg loop for
// datagram batches on macOS (FreeBSD: recvmmsg/sendmmsg), a kqueue EVFILT_TIMER as the precise
// timer, SIGURG (FreeBSD: a real-time signal) for thread interruption, and no thread scheduling.
#include "platform.h"

#if defined(IOMUX_PLATFORM_BSD)

#include <fcntl.h>
#include <pthread.h>
#ifndef __APPLE__
#include <pthread_np.h>  // pthread_set_name_np
#endif
#include <signal.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace iomux {
namespace platform {

namespace {

int fail_and_close(int fd) {
  int err = -errno;
  ::close(fd);
  return err;
}

// Sets close-on-exec and the blocking mode; where the platform has no per-socket flag for SIGPIPE
// in send(), suppresses it on the socket. Returns 0 or -errno, leaving fd open.
int prepare_fd(int fd, bool blocking, bool socket) {
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -errno;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  int wanted = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) return -errno;
#if defined(SO_NOSIGPIPE) && defined(__APPLE__)
  int one = 1;
  if (socket && ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) != 0) return -errno;
#else
  (void)socket;
#endif
  return 0;
}

}  // namespace

int open_wake(WakeFds* out) {
  int fds[2];
  if (::pipe(fds) != 0) return -errno;
  for (int fd : fds) {
    int rc = prepare_fd(fd, /*blocking=*/false, /*socket=*/false);
    if (rc != 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return rc;
    }
  }
  out->read_fd = fds[0];
  out->write_fd = fds[1];
  return 0;
}

int signal_wake(int write_fd) {
  int saved = errno;
  char one = 1;
  ssize_t n;
  do {
    n = ::write(write_fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the pipe is full, so its read end is readable already.
  int rc = (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ? -errno : 0;
  errno = saved;
  return rc;
}

int drain_wake(int read_fd) {
  int saved = errno;
  int rc = 0;
  char buf[256];  // a pipe is read until it is empty
  for (;;) {
    ssize_t n = ::read(read_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) rc = -errno;
      break;
    }
    // Our pipe has its write end open: end-of-file means the number now names another file.
    if (n == 0) {
      rc = -EBADF;
      break;
    }
    if (n < static_cast<ssize_t>(sizeof(buf))) break;
  }
  errno = saved;
  return rc;
}

int open_socket(int family, int type) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
#else
  // No atomic flags (macOS): a fork+exec on another thread in between could inherit the fd.
  int fd = ::socket(family, type, 0);
  if (fd < 0) return -errno;
  int rc = prepare_fd(fd, /*blocking=*/false, /*socket=*/true);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  return fd;
#endif
}

int accept_socket(int listen_fd, bool blocking) {
  for (;;) {
#if defined(__FreeBSD__)
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK));
    if (fd >= 0) return fd;
#else
    int fd = ::accept(listen_fd, nullptr, nullptr);
    // BSD accept() copies O_NONBLOCK from the listener: the mode is set either way.
    if (fd >= 0) return prepare_fd(fd, blocking, /*socket=*/true) == 0 ? fd : fail_and_close(fd);
#endif
    if (errno != EINTR || blocking) return -errno;
  }
}

int duplicate_socket(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return copy < 0 ? -errno : copy;
}

#if defined(__FreeBSD__)

int receive_messages(int fd, MultiMessage* messages, unsigned count, bool wait_for_first) {
  int flags = wait_for_first ? MSG_WAITFORONE : MSG_DONTWAIT;
  for (;;) {
    ssize_t n = ::recvmmsg(fd, messages, count, flags, nullptr);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR && !wait_for_first) continue;
    return -errno;
  }
}

int send_messages(int fd, MultiMessage* messages, unsigned count, bool blocking) {
  int flags = MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT);
  for (;;) {
    ssize_t n = ::sendmmsg(fd, messages, count, flags);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR && !blocking) continue;
    return -errno;
  }
}

#else  // macOS: no recvmmsg/sendmmsg, one call per datagram

int receive_messages(int fd, MultiMessage* messages, unsigned count, bool wait_for_first) {
  unsigned done = 0;
  while (done < count) {
    // Only the first receive may block (MSG_WAITFORONE's meaning); the rest take what is queued.
    bool may_block = wait_for_first && done == 0;
    ssize_t n = ::recvmsg(fd, &messages[done].msg_hdr, may_block ? 0 : MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR && !may_block) continue;
      if (done == 0) return -errno;
      // An error after some datagrams (EAGAIN: the queue ran empty) ends the batch; a socket
      // error such as an ICMP refusal is reported by the socket once, so it is not retried.
      break;
    }
    messages[done].msg_len = static_cast<unsigned>(n);
    ++done;
  }
  return static_cast<int>(done);
}

int send_messages(int fd, MultiMessage* messages, unsigned count, bool blocking) {
  unsigned done = 0;
  while (done < count) {
    ssize_t n =
        ::sendmsg(fd, &messages[done].msg_hdr, kSendNoSignal | (blocking ? 0 : MSG_DONTWAIT));
    if (n < 0) {
      if (errno == EINTR && !blocking) continue;
      if (done == 0) return -errno;
      break;  // as sendmmsg: the next call reports this datagram's error
    }
    messages[done].msg_len = static_cast<unsigned>(n);
    ++done;
  }
  return static_cast<int>(done);
}

#endif

int OneShotTimer::open() {
  close();
  int fd = ::kqueue();
  if (fd < 0) return -errno;
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return fail_and_close(fd);
  fd_ = fd;
  return 0;
}

void OneShotTimer::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {
constexpr uintptr_t kTimerIdent = 1;  // the kqueue holds this one timer only
}  // namespace

int OneShotTimer::arm(int64_t ns) {
  struct kevent change;
  // EV_ADD on a timer that exists already replaces its deadline.
  EV_SET(&change, kTimerIdent, EVFILT_TIMER, EV_ADD | EV_ENABLE | EV_ONESHOT, NOTE_NSECONDS, ns,
         nullptr);
  return ::kevent(fd_, &change, 1, nullptr, 0, nullptr) == 0 ? 0 : -errno;
}

int OneShotTimer::disarm() {
  struct kevent change;
  EV_SET(&change, kTimerIdent, EVFILT_TIMER, EV_DELETE, 0, 0, nullptr);
  if (::kevent(fd_, &change, 1, nullptr, 0, nullptr) == 0) return 0;
  // ENOENT: not armed, or a one-shot that fired (EV_ONESHOT deletes it): nothing to cancel.
  return errno == ENOENT ? 0 : -errno;
}

bool OneShotTimer::consume() {
  struct kevent fired;
  timespec now{0, 0};
  int n;
  do {
    n = ::kevent(fd_, nullptr, 0, &fired, 1, &now);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

int interrupt_candidates(int* out, int max) {
  int n = 0;
#if defined(SIGRTMIN)
  for (int sig = SIGRTMIN + 5; sig <= SIGRTMAX && n < max; ++sig) out[n++] = sig;
#else
  if (max > 0) out[n++] = SIGURG;  // macOS has no real-time signals
#endif
  return n;
}

bool sent_by_own_thread(int code, long pid) {
#if defined(__FreeBSD__)
  return code == SI_LWP && pid == static_cast<long>(::getpid());
#else
  // macOS fills no sender for a pthread_kill(). SIGURG's default action is to ignore it, so
  // treating every instance as ours changes nothing for a signal we did not send.
  (void)code;
  (void)pid;
  return true;
#endif
}

int set_thread_scheduling(const char* policy, int /*priority*/) {
  if (std::strcmp(policy, "normal") != 0 && std::strcmp(policy, "batch") != 0 &&
      std::strcmp(policy, "idle") != 0 && std::strcmp(policy, "fifo") != 0 &&
      std::strcmp(policy, "rr") != 0) {
    return -EINVAL;
  }
  // No SCHED_BATCH / SCHED_IDLE per thread on macOS or FreeBSD; their SCHED_FIFO is inherited by
  // every thread created later (no SCHED_RESET_ON_FORK), so it is not offered either.
  return -ENOSYS;
}

// macOS has only affinity hints (thread_policy_set's affinity tags), no set of CPUs a thread is
// held to; FreeBSD's cpuset_setaffinity is not wired up here.
int set_thread_affinity(const int* /*cpus*/, int /*n*/) { return -ENOSYS; }
int set_other_threads_affinity(const int* /*cpus*/, int /*n*/) { return -ENOSYS; }
int thread_affinity(int* /*out*/, int /*max*/) { return -ENOSYS; }
int allowed_cpus(int* /*out*/, int /*max*/) { return -ENOSYS; }

void name_current_thread(const char* name) {
#ifdef __APPLE__
  pthread_setname_np(name);  // macOS names only the calling thread
#else
  pthread_set_name_np(pthread_self(), name);
#endif
}

}  // namespace platform
}  // namespace iomux

#endif  // IOMUX_PLATFORM_BSD
