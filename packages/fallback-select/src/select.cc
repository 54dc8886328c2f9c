// select(2) behind the shared readiness engine: the portable readiness backend.
//
// select() has no fd libuv could watch, so a watcher thread blocks in select() on a snapshot of
// the interest sets plus a wake pipe, and when a socket is ready it signals an eventfd (wait_fd)
// and parks until the main thread has caught up. wait() runs on the main thread: a zero-timeout
// select() on the live sets. While that finds sockets ready, the eventfd stays signalled (level-
// triggered, so the glue polls again); once it finds none, it clears the eventfd and re-arms the
// watcher, which snapshots the current sets. add/modify/remove wake an armed watcher so it
// restarts with the new sets. The watcher never spins: after a report it waits on a condvar.
//
// fds at or above FD_SETSIZE cannot be put in an fd_set: add()/modify() refuse them with ERANGE,
// so a listen/connect gets -ERANGE and an accept a kEventAcceptError with ERANGE.
#include <sys/select.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "notifier.h"
#include "readiness.h"
#include "socket_util.h"
#include "thread_util.h"

namespace iomux {

namespace {

constexpr size_t kWatcherStack = 64 * 1024;

bool in_range(int fd) { return fd >= 0 && fd < FD_SETSIZE; }

class SelectPoller final : public Poller {
 public:
  SelectPoller() : slots_(FD_SETSIZE) {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
  }

  ~SelectPoller() override {
    if (started_) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        wake_.signal();
      }
      cv_.notify_one();
      pthread_join(thread_, nullptr);
    }
  }

  // Returns 0 or -errno.
  int init() {
    int rc = ready_.open();
    if (rc == 0) rc = wake_.open();
    if (rc != 0) return rc;
    if (!in_range(wake_.fd())) return -ERANGE;
    rc = start_thread(&SelectPoller::watcher_main, this, kWatcherStack, false, &thread_);
    if (rc != 0) return rc;
    started_ = true;
    return 0;
  }

  int wait_fd() const override { return ready_.fd(); }

  int add(int fd, int token, uint8_t interest) override {
    if (!in_range(fd)) return -ERANGE;
    if (slots_[static_cast<size_t>(fd)].present) return -EEXIST;
    return update(fd, token, interest);
  }

  int modify(int fd, int token, uint8_t interest) override {
    if (!in_range(fd)) return -ERANGE;
    if (!slots_[static_cast<size_t>(fd)].present) return -ENOENT;
    return update(fd, token, interest);
  }

  int remove(int fd) override {
    if (!in_range(fd) || !slots_[static_cast<size_t>(fd)].present) return -ENOENT;
    slots_[static_cast<size_t>(fd)] = Slot{};
    std::lock_guard<std::mutex> lock(mu_);
    FD_CLR(fd, &read_set_);
    FD_CLR(fd, &write_set_);
    while (max_fd_ >= 0 && !slots_[static_cast<size_t>(max_fd_)].present) --max_fd_;
    changed_locked();
    return 0;
  }

  int wait(Readiness* out, int max) override {
    // Other code may have closed the wait fd (as a buggy library might): a closed fd never fires
    // its uv_poll again and its number may already name another file, so it is checked on every
    // wait without reading it, and once lost it is never touched again (the engine then fails
    // over; the successor may get the same number).
    if (ready_lost_) return -EBADF;
    if (Notifier::closed_elsewhere(ready_.verify())) return lose_ready();
    // Only this (main) thread writes the live sets, so reading them here needs no lock.
    fd_set readable = read_set_;
    fd_set writable = write_set_;
    int nfds = max_fd_ + 1;
    int n;
    do {
      timeval zero{0, 0};
      n = ::select(nfds, &readable, &writable, nullptr, &zero);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) {
      // Nothing ready: clear the wait fd and let the watcher block in select() again.
      std::unique_lock<std::mutex> lock(mu_);
      if (Notifier::closed_elsewhere(ready_.drain())) {
        lock.unlock();
        return lose_ready();
      }
      if (!armed_) {
        armed_ = true;
        cv_.notify_one();
      }
      return 0;
    }
    // Something is ready: the wait fd stays signalled, so the glue polls again after this batch
    // and a socket still ready then is reported again. Scanning starts where the last truncated
    // batch stopped, so no fd starves behind lower ones.
    int count = 0;
    int found = 0;
    int last = -1;
    for (int k = 0; k < nfds && found < n && count < max; ++k) {
      int fd = (cursor_ + k) % nfds;
      bool r = FD_ISSET(fd, &readable) != 0;
      bool w = FD_ISSET(fd, &writable) != 0;
      if (!r && !w) continue;
      found += (r ? 1 : 0) + (w ? 1 : 0);
      out[count++] = Readiness{slots_[static_cast<size_t>(fd)].token, r, w, false};
      last = fd;
    }
    cursor_ = count == max ? (last + 1) % nfds : 0;
    return count;
  }

 private:
  struct Slot {
    bool present = false;
    int token = -1;
  };

  int update(int fd, int token, uint8_t interest) {
    Slot& slot = slots_[static_cast<size_t>(fd)];
    slot.present = true;
    slot.token = token;
    std::lock_guard<std::mutex> lock(mu_);
    if ((interest & kInterestRead) != 0) {
      FD_SET(fd, &read_set_);
    } else {
      FD_CLR(fd, &read_set_);
    }
    if ((interest & kInterestWrite) != 0) {
      FD_SET(fd, &write_set_);
    } else {
      FD_CLR(fd, &write_set_);
    }
    if (fd > max_fd_) max_fd_ = fd;
    changed_locked();
    return 0;
  }

  // The wait fd was closed by other code: forget it (under mu_, since the watcher signals it) so
  // neither thread reads, writes or closes the number again. Every later wait() fails.
  int lose_ready() {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.abandon();
    ready_lost_ = true;
    return -EBADF;
  }

  // The sets changed: an armed watcher may be blocked on an old snapshot, so wake it.
  void changed_locked() {
    ++version_;
    if (armed_ && !wake_pending_) {
      wake_pending_ = true;
      wake_.signal();
    }
  }

  static void* watcher_main(void* self) {
    static_cast<SelectPoller*>(self)->watch();
    return nullptr;
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || armed_; });
      if (stop_) return;
      fd_set readable = read_set_;
      fd_set writable = write_set_;
      int wake_fd = wake_.fd();
      int nfds = (max_fd_ > wake_fd ? max_fd_ : wake_fd) + 1;
      uint64_t version = version_;
      FD_SET(wake_fd, &readable);
      lock.unlock();
      int n = ::select(nfds, &readable, &writable, nullptr, nullptr);
      int err = errno;
      bool woken = n > 0 && FD_ISSET(wake_fd, &readable) != 0;
      if (woken) wake_.drain();
      lock.lock();
      if (woken) wake_pending_ = false;
      if (stop_) return;
      if (n < 0) {
        if (err == EINTR) continue;
        // EBADF: an fd of the snapshot was removed and closed meanwhile; the sets changed, so
        // retry with new ones. Otherwise the error is real: hand it to the main thread, whose
        // wait() will see it too and fail the engine.
        if (err == EBADF && version != version_) continue;
      } else if (n - (woken ? 1 : 0) == 0) {
        continue;  // only the wake pipe: take a new snapshot
      }
      armed_ = false;
      ready_.signal();
    }
  }

  std::vector<Slot> slots_;  // by fd; main thread only
  // The live interest sets: written by the main thread under mu_, read by the watcher under mu_
  // and by the main thread without it.
  fd_set read_set_;
  fd_set write_set_;
  int max_fd_ = -1;
  int cursor_ = 0;           // main thread only
  bool ready_lost_ = false;  // main thread only: ready_ was closed by other code and abandoned

  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = true;          // the watcher may select(); false after it reported, until wait()
  bool stop_ = false;          // destructor: the watcher exits
  bool wake_pending_ = false;  // a wake byte is in the pipe and not yet drained
  uint64_t version_ = 0;       // bumped on every change of the sets

  Notifier ready_;  // wait_fd: signalled by the watcher when a socket is ready
  Notifier wake_;   // wakes the watcher out of select()
  pthread_t thread_{};
  bool started_ = false;
};

}  // namespace

namespace backend {

const char* const kName = "select";

std::string probe(int simulated_errno) {
  int fd = -1;
  std::string failure = probe_notifier(kName, simulated_errno, &fd);
  if (!failure.empty() || in_range(fd)) return failure;
  return "select cannot watch fd " + std::to_string(fd) + ": the process already has FD_SETSIZE (" +
         std::to_string(FD_SETSIZE) + ") fds open";
}

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  auto poller = std::make_unique<SelectPoller>();
  int rc = poller->init();
  if (rc != 0) {
    *error = rc;
    return nullptr;
  }
  return std::make_unique<ReadinessEngine>(std::move(poller), config);
}

}  // namespace backend

}  // namespace iomux
