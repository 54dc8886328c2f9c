// macOS / FreeBSD kqueue, level-triggered, behind the shared readiness engine, written after
// libuv's kqueue.c and mio's selector/kqueue.rs. Interest changes are collected in a changelist:
// those made while the engine serves a batch reach the kernel together, in the kevent() that
// waits when one follows, else in one kevent() with EV_RECEIPT when the engine commits at the end
// of its poll (the wait fd is polled only once it is readable, so a change cannot be left for a
// wait that may never come). A removal goes out at once, because the engine closes the fd (or
// hands it to another backend) right after, and a deferred EV_DELETE would name a number that
// may belong to another file by then.
#include <fcntl.h>
#include <sys/event.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "readiness.h"
#include "socket_util.h"

namespace iomux {

namespace {

void* to_udata(int token) { return reinterpret_cast<void*>(static_cast<intptr_t>(token)); }
int from_udata(void* udata) { return static_cast<int>(reinterpret_cast<intptr_t>(udata)); }

class KqueuePoller final : public Poller {
 public:
  explicit KqueuePoller(int kq) : kq_(kq) {}
  ~KqueuePoller() override {
    if (kq_ >= 0) close_fd(kq_);  // -1 once lost to other code: the number is not ours
  }

  int wait_fd() const override { return kq_; }
  int add(int fd, int token, uint8_t interest) override { return change(fd, token, interest); }
  int modify(int fd, int token, uint8_t interest) override { return change(fd, token, interest); }

  int remove(int fd) override {
    if (kq_ < 0) return -EBADF;
    drop_pending(fd);
    uint8_t had = interest_of(fd);
    set_interest(fd, kInterestNone);
    // EV_RECEIPT: both deletes are applied even if the first fails, and each reports back in
    // `receipts` instead of the call draining pending events.
    struct kevent deletes[2];
    struct kevent receipts[2];
    int n = 0;
    for (uint8_t bit : {kInterestRead, kInterestWrite}) {
      if ((had & bit) == 0) continue;
      int16_t filter = bit == kInterestRead ? EVFILT_READ : EVFILT_WRITE;
      EV_SET(&deletes[n++], static_cast<uintptr_t>(fd), filter, EV_DELETE | EV_RECEIPT, 0, 0,
             nullptr);
    }
    if (n == 0) return 0;
    timespec no_wait{0, 0};
    int got;
    do {
      got = kevent(kq_, deletes, n, receipts, n, &no_wait);
    } while (got < 0 && errno == EINTR);
    if (got < 0) return -errno;
    for (int i = 0; i < got; ++i) {
      // ENOENT: a filter added in the same batch never reached the kernel; EBADF: the fd is
      // closed already, which removed its filters.
      auto err = static_cast<int>(receipts[i].data);
      if (err != 0 && err != ENOENT && err != EBADF) return -err;
    }
    return 0;
  }

  int commit() override {
    if (changes_.empty()) return 0;
    if (kq_ < 0) return -EBADF;
    // EV_RECEIPT: every change is applied and answers in the eventlist, and no event is drained.
    for (struct kevent& e : changes_) e.flags |= EV_RECEIPT;
    if (events_.size() < changes_.size()) events_.resize(changes_.size());
    timespec no_wait{0, 0};
    int n;
    do {
      n = kevent(kq_, changes_.data(), static_cast<int>(changes_.size()), events_.data(),
                 static_cast<int>(changes_.size()), &no_wait);
    } while (n < 0 && errno == EINTR);  // applying a change again is harmless
    changes_.clear();
    if (n < 0) return -errno;
    int first_error = 0;
    for (int i = 0; i < n; ++i) {
      const struct kevent& e = events_[static_cast<size_t>(i)];
      if (e.data == 0 || e.data == ENOENT) continue;  // applied, or a delete of a gone filter
      if (first_error == 0) first_error = static_cast<int>(e.data);
      refused_.push_back(from_udata(e.udata));
    }
    return -first_error;
  }

  int wait(Readiness* out, int max) override {
    if (kq_ < 0) return -EBADF;
    int count = 0;
    // Sockets whose change commit() saw refused: the engine's next read or write tells why.
    while (!refused_.empty() && count < max) {
      out[count++] = Readiness{refused_.back(), false, false, true};
      refused_.pop_back();
    }
    if (count > 0) return count;
    // Every change may come back as an EV_ERROR entry: room for all of them, or kevent() would
    // fail the whole call and leave later changes unapplied.
    size_t room =
        static_cast<size_t>(max) > changes_.size() ? static_cast<size_t>(max) : changes_.size();
    if (events_.size() < room) events_.resize(room);
    timespec no_wait{0, 0};
    int n;
    for (;;) {
      n = kevent(kq_, changes_.data(), static_cast<int>(changes_.size()), events_.data(),
                 static_cast<int>(room), &no_wait);
      if (n >= 0 || errno != EINTR) break;
      changes_.clear();  // EINTR comes after the changelist was applied
    }
    if (n < 0) {
      int err = errno;
      // EBADF: other code closed our kqueue fd; EINVAL: the number may now name another file.
      // Forget it, so it is never kevent()'ed or closed by us again.
      if (err == EBADF || err == EINVAL) kq_ = -1;
      return -err;
    }
    changes_.clear();
    return translate(n, out, max);
  }

 private:
  int change(int fd, int token, uint8_t interest) {
    if (kq_ < 0) return -EBADF;
    uint8_t had = interest_of(fd);
    // EV_ADD for every filter wanted (it also updates the token of one already there), EV_DELETE
    // for one no longer wanted.
    for (uint8_t bit : {kInterestRead, kInterestWrite}) {
      int16_t filter = bit == kInterestRead ? EVFILT_READ : EVFILT_WRITE;
      if ((interest & bit) != 0) {
        push(fd, filter, EV_ADD | EV_ENABLE, token);
      } else if ((had & bit) != 0) {
        push(fd, filter, EV_DELETE, token);
      }
    }
    set_interest(fd, interest);
    return 0;
  }

  void push(int fd, int16_t filter, uint16_t flags, int token) {
    struct kevent e;
    EV_SET(&e, static_cast<uintptr_t>(fd), filter, flags, 0, 0, to_udata(token));
    changes_.push_back(e);
  }

  // Changes for fd still waiting for the next kevent(): moot once it is removed.
  void drop_pending(int fd) {
    size_t kept = 0;
    for (const struct kevent& e : changes_) {
      if (e.ident != static_cast<uintptr_t>(fd)) changes_[kept++] = e;
    }
    changes_.resize(kept);
  }

  uint8_t interest_of(int fd) const {
    if (static_cast<size_t>(fd) >= interest_.size()) return kInterestNone;
    return interest_[static_cast<size_t>(fd)];
  }
  void set_interest(int fd, uint8_t interest) {
    if (static_cast<size_t>(fd) >= interest_.size()) interest_.resize(static_cast<size_t>(fd) + 1);
    interest_[static_cast<size_t>(fd)] = interest;
  }

  // kevent() reports each filter separately: the read and write events of one fd become one
  // Readiness when they are next to each other. At most max entries; with level-triggered
  // filters, what does not fit is reported again by the next call.
  int translate(int n, Readiness* out, int max) {
    int count = 0;
    for (int i = 0; i < n; ++i) {
      const struct kevent& e = events_[static_cast<size_t>(i)];
      int token = from_udata(e.udata);
      bool failed;
      bool readable = false;
      bool writable = false;
      if ((e.flags & EV_ERROR) != 0) {
        // A change the kernel refused (FreeBSD keeps only EV_ERROR in flags, so the errno says
        // which kind): a delete of a filter that is gone (ENOENT) changes nothing; a refused add
        // means the socket is not watched, and the engine's next read or write tells why.
        if (e.data == 0 || e.data == ENOENT) continue;
        failed = true;
      } else if (e.filter == EVFILT_READ) {
        readable = true;
        failed = (e.flags & EV_EOF) != 0 && e.fflags != 0;  // EOF with the socket's error
      } else if (e.filter == EVFILT_WRITE) {
        writable = true;
        failed = (e.flags & EV_EOF) != 0;  // the socket can send no more
      } else {
        continue;
      }
      if (count > 0 && out[count - 1].token == token) {
        Readiness& last = out[count - 1];
        last.readable = last.readable || readable;
        last.writable = last.writable || writable;
        last.failed = last.failed || failed;
        continue;
      }
      if (count == max) break;
      out[count++] = Readiness{token, readable, writable, failed};
    }
    return count;
  }

  int kq_;
  std::vector<struct kevent> changes_;
  std::vector<struct kevent> events_;
  std::vector<int> refused_;       // tokens of changes commit() saw refused, not reported yet
  std::vector<uint8_t> interest_;  // by fd: the filters this poller has asked the kernel for
};

}  // namespace

namespace backend {

const char* const kName = "kqueue";

std::string probe(int simulated_errno) {
  int fd = simulated_errno != 0 ? -1 : kqueue();
  int err = simulated_errno != 0 ? simulated_errno : errno;
  if (fd < 0) return std::string("kqueue() failed: ") + std::strerror(err);
  close_fd(fd);
  return "";
}

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  int kq = kqueue();
  if (kq < 0) {
    *error = -errno;
    return nullptr;
  }
  // kqueue() has no close-on-exec flag on macOS (FreeBSD 13 has kqueuex): set it now. A child
  // does not inherit a kqueue across fork() anyway; this covers exec without fork.
  if (fcntl(kq, F_SETFD, FD_CLOEXEC) != 0) {
    *error = -errno;
    close_fd(kq);
    return nullptr;
  }
  return std::make_unique<ReadinessEngine>(std::make_unique<KqueuePoller>(kq), config);
}

}  // namespace backend

}  // namespace iomux
