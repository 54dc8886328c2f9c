#include "notifier.h"

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
  rc = platform::wake_identity(read_fd_, &identity_);
  if (rc != 0) close();
  return rc;
}

int Notifier::verify() const {
  if (read_fd_ < 0) return -EBADF;
  platform::WakeIdentity now;
  if (platform::wake_identity(read_fd_, &now) != 0) return -EBADF;
  return now == identity_ ? 0 : -EBADF;
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
