// Linux epoll, level-triggered, behind the shared readiness engine.
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "readiness.h"
#include "socket_util.h"

namespace iomux {

namespace {

uint32_t to_epoll(uint8_t interest) {
  return ((interest & kInterestRead) != 0 ? EPOLLIN : 0u) |
         ((interest & kInterestWrite) != 0 ? EPOLLOUT : 0u);
}

class EpollPoller final : public Poller {
 public:
  explicit EpollPoller(int epfd) : epfd_(epfd) {}
  ~EpollPoller() override {
    if (epfd_ >= 0) close_fd(epfd_);  // -1 once lost to other code: the number is not ours
  }

  int wait_fd() const override { return epfd_; }
  int add(int fd, int token, uint8_t interest) override {
    return ctl(EPOLL_CTL_ADD, fd, token, interest);
  }
  int modify(int fd, int token, uint8_t interest) override {
    return ctl(EPOLL_CTL_MOD, fd, token, interest);
  }
  int remove(int fd) override { return ctl(EPOLL_CTL_DEL, fd, 0, kInterestNone); }

  int wait(Readiness* out, int max) override {
    if (events_.size() < static_cast<size_t>(max)) events_.resize(static_cast<size_t>(max));
    int n;
    do {
      n = epoll_wait(epfd_, events_.data(), max, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      int err = errno;
      // EBADF: other code closed our epoll fd; EINVAL: the number now names a file that is not an
      // epoll instance. Either way the number may already belong to someone else (the successor
      // engine may get it next): forget it, so it is never epoll_ctl'ed or closed by us again.
      if (err == EBADF || err == EINVAL) epfd_ = -1;
      return -err;
    }
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events_[static_cast<size_t>(i)];
      out[i] = Readiness{static_cast<int>(e.data.u32), (e.events & EPOLLIN) != 0,
                         (e.events & EPOLLOUT) != 0, (e.events & (EPOLLERR | EPOLLHUP)) != 0};
    }
    return n;
  }

 private:
  int ctl(int op, int fd, int token, uint8_t interest) {
    epoll_event event{};
    event.events = to_epoll(interest);
    event.data.u32 = static_cast<uint32_t>(token);
    if (epfd_ < 0) return -EBADF;  // lost to other code (see wait()): never touch the number
    return epoll_ctl(epfd_, op, fd, &event) == 0 ? 0 : -errno;
  }

  int epfd_;
  std::vector<epoll_event> events_;
};

}  // namespace

namespace backend {

const char* const kName = "epoll";

std::string probe(int simulated_errno) {
  int fd = simulated_errno != 0 ? -1 : epoll_create1(EPOLL_CLOEXEC);
  int err = simulated_errno != 0 ? simulated_errno : errno;
  if (fd < 0) return std::string("epoll_create1 failed: ") + std::strerror(err);
  close_fd(fd);
  return "";
}

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    *error = -errno;
    return nullptr;
  }
  return std::make_unique<ReadinessEngine>(std::make_unique<EpollPoller>(epfd), config);
}

}  // namespace backend

}  // namespace iomux
