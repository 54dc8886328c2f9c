// A wake-up fd a native thread (or a completion kernel) can signal and libuv can watch: the wait
// fd of engines whose work arrives off Node's main thread (blocking_io's threads, io_uring's
// eventfd-driven completions, select's helper).
#ifndef IOMUX_NOTIFIER_H_
#define IOMUX_NOTIFIER_H_

#include <string>

namespace iomux {

// An fd that becomes readable after signal() and stays readable until drain(): an eventfd on
// Linux, a non-blocking pipe elsewhere. Both ends are close-on-exec. signal() and drain() are
// thread-safe and keep errno; open() and close() belong to the owner's thread.
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

// Clears (blocking = true) or sets O_NONBLOCK. Returns 0 or -errno. (The Notifier's pipe ends use
// it; so do engines that hand fds between blocking and non-blocking owners.)
int set_blocking(int fd, bool blocking);

// The availability probe of a backend whose setup needs a Notifier (select, blocking_io): opens
// one and closes it again. Returns "" when it opened, else "<backend> setup failed: <reason>"; a
// non-zero simulated_errno gives that errno's explanation without trying. When opened_fd is given
// it receives the number the Notifier got (for a further check, e.g. select's FD_SETSIZE).
std::string probe_notifier(const char* backend, int simulated_errno, int* opened_fd);

}  // namespace iomux

#endif  // IOMUX_NOTIFIER_H_
