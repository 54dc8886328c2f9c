#include "notifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "socket_util.h"

namespace iomux {

int Notifier::open() {
  close();
#ifdef __linux__
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return -errno;
  read_fd_ = fd;
  write_fd_ = fd;
#else
  int fds[2];
  if (::pipe(fds) != 0) return -errno;
  for (int fd : fds) {
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || set_blocking(fd, false) != 0) {
      int err = -errno;
      close_fd(fds[0]);
      close_fd(fds[1]);
      return err;
    }
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
#endif
  return 0;
}

void Notifier::close() {
  if (write_fd_ >= 0 && write_fd_ != read_fd_) close_fd(write_fd_);
  if (read_fd_ >= 0) close_fd(read_fd_);
  read_fd_ = -1;
  write_fd_ = -1;
}

void Notifier::signal() const {
  int saved = errno;
#ifdef __linux__
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(write_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
#else
  char one = 1;
  ssize_t n;
  do {
    n = ::write(write_fd_, &one, 1);
  } while (n < 0 && errno == EINTR);
#endif
  // EAGAIN: the counter or pipe is full, so the fd is readable already.
  (void)n;
  errno = saved;
}

void Notifier::drain() const {
  int saved = errno;
#ifdef __linux__
  uint64_t count;
  ssize_t n;
  do {
    n = ::read(read_fd_, &count, sizeof(count));
  } while (n < 0 && errno == EINTR);
#else
  char buf[256];
  for (;;) {
    ssize_t n = ::read(read_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < static_cast<ssize_t>(sizeof(buf))) break;
  }
#endif
  errno = saved;
}

int set_blocking(int fd, bool blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  int wanted = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) return -errno;
  return 0;
}

std::string probe_notifier(const char* backend, int simulated_errno, int* opened_fd) {
  int err = simulated_errno;
  if (err == 0) {
    Notifier notifier;
    int rc = notifier.open();
    if (rc == 0) {
      if (opened_fd != nullptr) *opened_fd = notifier.fd();
      return "";
    }
    err = -rc;
  }
  return std::string(backend) + " setup failed: " + std::strerror(err);
}

}  // namespace iomux
