// select()'s interest sets, for the select backend (packages/fallback-select/src/select.cc). The
// two families differ in what an fd_set is, so the difference lives here, not in the backend:
//   POSIX:   a bitmap indexed by fd number; an fd at or above FD_SETSIZE cannot be put in one,
//            whatever the count, and select() scans numbers 0..nfds-1.
//   Windows: an array of up to FD_SETSIZE SOCKETs (raised from Winsock's 64 to 1024 in
//            platform_win32_posix.h); any socket value fits, the limit is how many are in a set,
//            nfds is ignored, and membership is a linear search of the array.
#ifndef IOMUX_PLATFORM_SELECT_H_
#define IOMUX_PLATFORM_SELECT_H_

#include "platform.h"

#if defined(IOMUX_PLATFORM_WIN32)
#include "platform_win32_posix.h"
static_assert(FD_SETSIZE >= 1024, "winsock2.h was included before platform_win32_posix.h");
#else
#include <sys/select.h>
#endif

#include <cerrno>

namespace iomux {
namespace platform {

#if defined(IOMUX_PLATFORM_WIN32)
// The limit select's error hint names: a count of sockets.
constexpr bool kSelectLimitIsCount = true;
inline SOCKET select_handle(int fd) { return win32::handle(fd); }
#else
// The limit select's error hint names: the highest fd number plus one.
constexpr bool kSelectLimitIsCount = false;
inline int select_handle(int fd) { return fd; }
#endif
constexpr int kSelectSetSize = FD_SETSIZE;

class SelectSet {
 public:
  SelectSet() { FD_ZERO(&set_); }

  // Whether fd's number can be in a set at all (POSIX: below FD_SETSIZE; Windows: any socket).
  static bool fits(int fd) { return fd >= 0 && (kSelectLimitIsCount || fd < FD_SETSIZE); }
  // Adds fd. False when it does not fit or (Windows) the set already holds FD_SETSIZE sockets.
  bool add(int fd) {
    if (!fits(fd)) return false;
    if (kSelectLimitIsCount && !has(fd) && size_ >= FD_SETSIZE) return false;
    if (!has(fd)) ++size_;
    FD_SET(select_handle(fd), &set_);
    return true;
  }
  void remove(int fd) {
    if (!fits(fd) || !has(fd)) return;
    FD_CLR(select_handle(fd), &set_);
    --size_;
  }
  bool has(int fd) const { return FD_ISSET(select_handle(fd), const_cast<fd_set*>(&set_)) != 0; }
  int size() const { return size_; }
  fd_set* raw() { return &set_; }

 private:
  fd_set set_;
  int size_ = 0;  // how many fds are in the set
};

// select() on the two sets; max_fd is the highest fd in either (Winsock ignores it). Blocks until
// one is ready when `block`, else returns at once. Returns how many are ready (the sets then hold
// only those) or -errno; EINTR is returned, not retried. Winsock refuses a call whose sets are all
// empty (WSAEINVAL): a non-blocking one then reports 0 without asking.
//
// A failed non-blocking connect is writable on POSIX; Winsock reports it in the exception set
// only, never as writable, so the write set's sockets are watched there too and a failure comes
// back as writable, where the engine asks SO_ERROR what happened, as it does on POSIX.
inline int select_ready(SelectSet* read, SelectSet* write, int max_fd, bool block) {
  if (!block && read->size() == 0 && write->size() == 0) return 0;
  timeval zero{0, 0};
#if defined(IOMUX_PLATFORM_WIN32)
  (void)max_fd;
  fd_set failed = *write->raw();
  int n = ::select(0, read->raw(), write->raw(), &failed, block ? nullptr : &zero);
  if (n < 0) return -(win32::fail_with_wsa(), errno);
  fd_set* writable = write->raw();
  for (u_int i = 0; i < failed.fd_count; ++i) {
    if (!FD_ISSET(failed.fd_array[i], writable)) FD_SET(failed.fd_array[i], writable);
  }
  // Winsock counts a socket once per set it is in; the exception set is folded into the write set.
  return static_cast<int>(read->raw()->fd_count + writable->fd_count);
#else
  int n = ::select(max_fd + 1, read->raw(), write->raw(), nullptr, block ? nullptr : &zero);
  if (n < 0) return -errno;
  return n;
#endif
}

}  // namespace platform
}  // namespace iomux

#endif  // IOMUX_PLATFORM_SELECT_H_
