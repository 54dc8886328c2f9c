// A wake-up fd a native thread (or a completion kernel) can signal and libuv can watch: the wait
// fd of engines whose work arrives off Node's main thread (blocking_io's threads, io_uring's
// eventfd-driven completions, select's helper).
#ifndef IOMUX_NOTIFIER_H_
#define IOMUX_NOTIFIER_H_

#include <cerrno>
#include <string>

#include "platform.h"

namespace iomux {

// An fd that becomes readable after signal() and stays readable until drain(): an eventfd on
// Linux, a non-blocking pipe on macOS/FreeBSD, a self-connected loopback UDP socket on Windows
// (platform::open_wake; a socket is what Winsock's select can watch). Both ends are close-on-exec.
// signal() and drain() are thread-safe and keep errno; open(), close() and abandon() belong to the
// owner's thread.
//
// signal() and drain() return 0 or -errno, so an owner can tell that other code closed its fd:
// closed_elsewhere(rc) is then true (EBADF, EINVAL, or a read of 0 bytes, which drain() reports as
// -EBADF: no eventfd or live pipe gives end-of-file, so the number now names another file). Such
// an owner calls abandon(): the number may already belong to other code and must never be read,
// written or closed again.
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
  // 0 (also when the fd was readable already), or -errno; -EBADF once abandoned or closed.
  int signal() const;
  // 0 (also when nothing was pending), or -errno; -EBADF once abandoned or closed.
  int drain() const;
  // Whether fd() still names the file open() made, asked without reading or writing it
  // (platform::wake_identity: fstat on POSIX, getsockname on Windows):
  // 0, or -EBADF when other code closed the number or it now names a different file (a number
  // reused by another anonymous-inode file, e.g. another eventfd, passes: fstat cannot tell them
  // apart). Costs one syscall; owners call it where a read of a reused number would be unsafe.
  int verify() const;
  // Forgets the fd without closing it (see above): fd() is -1 from here on.
  void abandon();
  static bool closed_elsewhere(int rc) { return rc == -EBADF || rc == -EINVAL; }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;  // == read_fd_ for an eventfd
  // What platform::wake_identity(read_fd_) said right after open(), for verify().
  platform::WakeIdentity identity_;
};

// Clears (blocking = true) or sets non-blocking mode (platform::set_blocking). Engines that hand
// fds between blocking and non-blocking owners use it.
using platform::set_blocking;

// The availability probe of a backend whose setup needs a Notifier (select, blocking_io): opens
// one and closes it again. Returns "" when it opened, else "<backend> setup failed: <reason>"; a
// non-zero simulated_errno gives that errno's explanation without trying. When opened_fd is given
// it receives the number the Notifier got (for a further check, e.g. select's FD_SETSIZE).
std::string probe_notifier(const char* backend, int simulated_errno, int* opened_fd);

}  // namespace iomux

#endif  // IOMUX_NOTIFIER_H_
