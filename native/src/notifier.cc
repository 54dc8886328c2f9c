#include "notifier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "platform.h"
#include "socket_util.h"

namespace iomux {

int Notifier::open() {
  close();
  platform::WakeFds fds;
  int rc = platform::open_wake(&fds);
  if (rc != 0) return rc;
  read_fd_ = fds.read_fd;
  write_fd_ = fds.write_fd;
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
  return platform::signal_wake(write_fd_);
}

int Notifier::drain() const {
  if (read_fd_ < 0) return -EBADF;
  return platform::drain_wake(read_fd_);
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
