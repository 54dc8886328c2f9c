#include "notifier.h"

#include <fcntl.h>
#include <sys/stat.h>
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
  struct stat st{};
  if (::fstat(read_fd_, &st) != 0) {
    int err = -errno;
    close();
    return err;
  }
  dev_ = static_cast<unsigned long long>(st.st_dev);
  ino_ = static_cast<unsigned long long>(st.st_ino);
  return 0;
}

int Notifier::verify() const {
  if (read_fd_ < 0) return -EBADF;
  int saved = errno;
  struct stat st{};
  int rc = ::fstat(read_fd_, &st);
  errno = saved;
  if (rc != 0) return -EBADF;
  bool same = static_cast<unsigned long long>(st.st_dev) == dev_ &&
              static_cast<unsigned long long>(st.st_ino) == ino_;
  return same ? 0 : -EBADF;
}

void Notifier::close() {
  if (write_fd_ >= 0 && write_fd_ != read_fd_) close_fd(write_fd_);
  if (read_fd_ >= 0) close_fd(read_fd_);
  read_fd_ = -1;
  write_fd_ = -1;
}

void Notifier::abandon() {
  read_fd_ = -1;
  write_fd_ = -1;
}

int Notifier::signal() const {
  if (write_fd_ < 0) return -EBADF;
  int saved = errno;
#ifdef __linux__
  uint64_t one = 1;
#else
  char one = 1;
#endif
  ssize_t n;
  do {
    n = ::write(write_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the counter or pipe is full, so the fd is readable already.
  int rc = (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ? -errno : 0;
  errno = saved;
  return rc;
}

int Notifier::drain() const {
  if (read_fd_ < 0) return -EBADF;
  int saved = errno;
  int rc = 0;
#ifdef __linux__
  uint64_t buf;  // one read takes the whole counter
#else
  char buf[256];  // a pipe is read until it is empty
#endif
  for (;;) {
    ssize_t n = ::read(read_fd_, &buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) rc = -errno;
      break;
    }
    // Our eventfd gives 8 bytes or EAGAIN, and our pipe has its write end open: end-of-file
    // means other code closed one of our numbers, which may already name another file.
    if (n == 0) {
      rc = -EBADF;
      break;
    }
#ifdef __linux__
    break;
#else
    if (n < static_cast<ssize_t>(sizeof(buf))) break;
#endif
  }
  errno = saved;
  return rc;
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
