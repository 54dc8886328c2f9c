// select(2) behind the shared readiness engine: the portable readiness backend, on POSIX and on
// Windows (Winsock's select); what an fd_set is on each is platform::SelectSet's business
// (native/src/platform_select.h).
//
// select() has no fd libuv could watch, so a watcher thread blocks in select() on a snapshot of
// the interest sets plus a wake notifier, and when a socket is ready it signals the ready notifier
// (wait_fd; on Windows, where the glue watches no fd, it calls the engine's waker as well) and
// parks until the main thread has caught up. wait() runs on the main thread: a zero-timeout
// select() on the live sets. While that finds sockets ready, the ready notifier stays signalled
// (level-triggered, so the glue polls again; a waker has no level, so it is called again); once it
// finds none, it clears the notifier and re-arms the watcher, which snapshots the current sets.
// add/modify/remove wake an armed watcher so it restarts with the new sets. The watcher never
// spins: after a report it waits on a condvar.
//
// A socket select cannot hold is refused by add()/modify() with ERANGE, so a listen/connect gets
// -ERANGE and an accept a kEventAcceptError with ERANGE: on POSIX an fd at or above FD_SETSIZE, on
// Windows the FD_SETSIZE-th socket (one place of a set is the watcher's wake socket).
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "notifier.h"
#include "platform_select.h"
#include "readiness.h"
#include "socket_util.h"
#include "thread_util.h"

namespace iomux {

namespace {

using platform::SelectSet;

constexpr size_t kWatcherStack = 64 * 1024;
// Sockets one poller holds at most: a set's capacity, less the watcher's wake notifier.
constexpr size_t kMaxSockets = static_cast<size_t>(platform::kSelectSetSize) - 1;

class SelectPoller final : public Poller {
 public:
  ~SelectPoller() override {
    if (started_) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        waker_ = nullptr;
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
    if (!SelectSet::fits(wake_.fd())) return -ERANGE;
    rc = start_thread(&SelectPoller::watcher_main, this, kWatcherStack, false, &thread_);
    if (rc != 0) return rc;
    started_ = true;
    return 0;
  }

  int wait_fd() const override { return ready_.fd(); }

  void set_waker(Engine::Waker wake, void* data) override {
    std::lock_guard<std::mutex> lock(mu_);
    waker_ = wake;
    waker_data_ = data;
    // The watcher reported before there was a waker: the glue must still hear of it.
    if (waker_ != nullptr && !armed_) waker_(waker_data_);
  }

  int add(int fd, int token, uint8_t interest) override {
    if (slots_.count(fd) != 0) return -EEXIST;
    if (!SelectSet::fits(fd) || slots_.size() >= kMaxSockets) return -ERANGE;
    slots_[fd] = Slot{token, fds_.size()};
    fds_.push_back(fd);
    return update(fd, interest);
  }

  int modify(int fd, int token, uint8_t interest) override {
    auto it = slots_.find(fd);
    if (it == slots_.end()) return SelectSet::fits(fd) ? -ENOENT : -ERANGE;
    it->second.token = token;
    return update(fd, interest);
  }

  int remove(int fd) override {
    auto it = slots_.find(fd);
    if (it == slots_.end()) return -ENOENT;
    // Swap-remove from the scan order: the last fd takes the removed one's place.
    size_t index = it->second.index;
    int moved = fds_.back();
    fds_[index] = moved;
    slots_[moved].index = index;
    fds_.pop_back();
    slots_.erase(fd);
    std::lock_guard<std::mutex> lock(mu_);
    read_set_.remove(fd);
    write_set_.remove(fd);
    if (fd == max_fd_) {
      max_fd_ = -1;
      for (int other : fds_) max_fd_ = other > max_fd_ ? other : max_fd_;
    }
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
    SelectSet readable = read_set_;
    SelectSet writable = write_set_;
    int n;
    do {
      n = platform::select_ready(&readable, &writable, max_fd_, /*block=*/false);
    } while (n == -EINTR);
    if (n < 0) return n;
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
    // batch stopped, so no socket starves behind others.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waker_ != nullptr) waker_(waker_data_);
    }
    int count = 0;
    int found = 0;
    size_t total = fds_.size();
    size_t last = 0;
    for (size_t k = 0; k < total && found < n && count < max; ++k) {
      size_t index = (cursor_ + k) % total;
      int fd = fds_[index];
      bool r = readable.has(fd);
      bool w = writable.has(fd);
      if (!r && !w) continue;
      found += (r ? 1 : 0) + (w ? 1 : 0);
      out[count++] = Readiness{slots_[fd].token, r, w, false};
      last = index;
    }
    cursor_ = count == max && total > 0 ? (last + 1) % total : 0;
    return count;
  }

 private:
  struct Slot {
    int token = -1;
    size_t index = 0;  // where fds_ holds this fd
  };

  int update(int fd, uint8_t interest) {
    std::lock_guard<std::mutex> lock(mu_);
    if ((interest & kInterestRead) != 0) {
      read_set_.add(fd);  // cannot fail: add() admitted the fd and the sets hold what it admits
    } else {
      read_set_.remove(fd);
    }
    if ((interest & kInterestWrite) != 0) {
      write_set_.add(fd);
    } else {
      write_set_.remove(fd);
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
      SelectSet readable = read_set_;
      SelectSet writable = write_set_;
      int wake_fd = wake_.fd();
      int max_fd = max_fd_ > wake_fd ? max_fd_ : wake_fd;
      uint64_t version = version_;
      readable.add(wake_fd);  // room was kept for it (kMaxSockets)
      lock.unlock();
      int n = platform::select_ready(&readable, &writable, max_fd, /*block=*/true);
      bool woken = n > 0 && readable.has(wake_fd);
      if (woken) wake_.drain();
      lock.lock();
      if (woken) wake_pending_ = false;
      if (stop_) return;
      if (n < 0) {
        if (n == -EINTR) continue;
        // EBADF: an fd of the snapshot was removed and closed meanwhile; the sets changed, so
        // retry with new ones. Otherwise the error is real: hand it to the main thread, whose
        // wait() will see it too and fail the engine.
        if (n == -EBADF && version != version_) continue;
      } else if (n - (woken ? 1 : 0) == 0) {
        continue;  // only the wake notifier: take a new snapshot
      }
      armed_ = false;
      ready_.signal();
      if (waker_ != nullptr) waker_(waker_data_);
    }
  }

  std::unordered_map<int, Slot> slots_;  // by fd; main thread only
  std::vector<int> fds_;                 // the registered fds, in scan order; main thread only
  // The live interest sets: written by the main thread under mu_, read by the watcher under mu_
  // and by the main thread without it.
  SelectSet read_set_;
  SelectSet write_set_;
  int max_fd_ = -1;
  size_t cursor_ = 0;        // main thread only
  bool ready_lost_ = false;  // main thread only: ready_ was closed by other code and abandoned

  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = true;          // the watcher may select(); false after it reported, until wait()
  bool stop_ = false;          // destructor: the watcher exits
  bool wake_pending_ = false;  // a wake byte is in the notifier and not yet drained
  uint64_t version_ = 0;       // bumped on every change of the sets
  Engine::Waker waker_ = nullptr;  // under mu_: Windows' glue, which watches no fd
  void* waker_data_ = nullptr;

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
  if (!failure.empty() || SelectSet::fits(fd)) return failure;
  return "select cannot watch fd " + std::to_string(fd) + ": the process already has FD_SETSIZE (" +
         std::to_string(platform::kSelectSetSize) + ") fds open";
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
