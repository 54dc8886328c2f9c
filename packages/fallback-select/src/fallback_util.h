// Helpers the two fallback backends (select, blocking_io) share: a wake-up fd a native thread can
// signal and libuv can watch, and thread start-up with a chosen stack size and no signals.
#ifndef IOMUX_FALLBACK_UTIL_H_
#define IOMUX_FALLBACK_UTIL_H_

#include <pthread.h>

#include <cstddef>

namespace iomux {

// An fd that becomes readable after signal() and stays readable until drain(): an eventfd on
// Linux, a non-blocking pipe elsewhere. Both ends are close-on-exec. Thread-safe.
class Notifier {
 public:
  Notifier() = default;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  ~Notifier() { close(); }

  // Returns 0 or -errno.
  int open();
  void close();
  // The fd to watch for readability.
  int fd() const { return read_fd_; }
  void signal() const;
  void drain() const;

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;  // == read_fd_ for an eventfd
};

// Starts a detached (detached = true) or joinable thread running fn(arg), with a stack of
// stack_bytes (raised to the platform minimum) and every signal blocked, so Node's main thread
// keeps receiving the process's signals. Returns 0 or -errno (EAGAIN when the system is out of
// threads).
int start_thread(void* (*fn)(void*), void* arg, size_t stack_bytes, bool detached, pthread_t* out);

// Clears (blocking = true) or sets O_NONBLOCK. Returns 0 or -errno.
int set_blocking(int fd, bool blocking);

}  // namespace iomux

#endif  // IOMUX_FALLBACK_UTIL_H_
