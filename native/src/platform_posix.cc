// The platform layer's calls that every POSIX family (Linux, macOS, FreeBSD) makes the same way,
// written once: fd identity by fstat and O_NONBLOCK by fcntl. Windows has its own in
// platform_win32.cc.
#include "platform.h"

#if !defined(IOMUX_PLATFORM_WIN32)

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <initializer_list>

namespace iomux {
namespace platform {

int wake_identity(int read_fd, WakeIdentity* out) {
  int saved = errno;
  struct stat st{};
  int rc = ::fstat(read_fd, &st);
  errno = saved;
  if (rc != 0) return -EBADF;
  out->first = static_cast<unsigned long long>(st.st_dev);
  out->second = static_cast<unsigned long long>(st.st_ino);
  return 0;
}

int set_blocking(int fd, bool blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  int wanted = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) return -errno;
  return 0;
}

int create_thread_unsignalled(pthread_t* out, const pthread_attr_t* attr, void* (*fn)(void*),
                              void* arg) {
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  // Faults stay deliverable, so crash handlers (Node's, sanitizers') still see them.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&all, sig);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  int rc = pthread_create(out, attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return -rc;
}

}  // namespace platform
}  // namespace iomux

#endif  // !IOMUX_PLATFORM_WIN32
