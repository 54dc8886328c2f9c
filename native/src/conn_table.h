// Slot table for sockets, indexed by id. Released ids wait in a side list until recycle(), which
// engines call at the start of poll(), so an id is never reused inside one event batch.
#ifndef IOMUX_CONN_TABLE_H_
#define IOMUX_CONN_TABLE_H_

#include <cerrno>
#include <vector>

#include "socket_util.h"

namespace iomux {

// Conn must have `bool in_use` and be default-constructible and movable.
template <typename Conn>
class ConnTable {
 public:
  // Returns a fresh id (its slot default-constructed, in_use set), or -ENOMEM.
  int alloc() {
    int id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
      slots_[static_cast<size_t>(id)] = Conn{};
    } else {
      if (slots_.size() >= kMaxIds) return -ENOMEM;
      id = static_cast<int>(slots_.size());
      slots_.emplace_back();
    }
    slots_[static_cast<size_t>(id)].in_use = true;
    ++live_;
    return id;
  }

  // alloc() for a socket that takes ownership of `fd`; when no id is left the fd is closed, so
  // an engine's open path has a single error exit.
  int alloc_owning(int fd) {
    int id = alloc();
    if (id < 0) {
      close_fd(fd);
      return id;
    }
    slots_[static_cast<size_t>(id)].fd = fd;
    return id;
  }

  // The socket with this id, or null. Pointers stay valid until the next alloc().
  Conn* get(int id) {
    if (id < 0 || static_cast<size_t>(id) >= slots_.size()) return nullptr;
    Conn* conn = &slots_[static_cast<size_t>(id)];
    return conn->in_use ? conn : nullptr;
  }

  // The connected stream socket with this id (not a listener, not a datagram socket), or null.
  Conn* stream(int id) {
    Conn* conn = get(id);
    return conn == nullptr || conn->listener || conn->datagram ? nullptr : conn;
  }

  // The fd of the socket with this id, or -EBADF (for Conn types with an `int fd`).
  int fd_of(int id) {
    Conn* conn = get(id);
    return conn == nullptr ? -EBADF : conn->fd;
  }

  // The local (or, with `peer`, the remote) address of the socket with this id.
  int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
    int fd = fd_of(id);
    return fd < 0 ? fd : socket_address(fd, peer, out, len);
  }

  void release(int id) {
    Conn* conn = get(id);
    if (conn == nullptr) return;
    *conn = Conn{};
    released_.push_back(id);
    --live_;
  }

  void recycle() {
    free_.insert(free_.end(), released_.begin(), released_.end());
    released_.clear();
  }

  int live() const { return live_; }
  int capacity() const { return static_cast<int>(slots_.size()); }

 private:
  static constexpr size_t kMaxIds = 1u << 24;
  std::vector<Conn> slots_;
  std::vector<int> free_;
  std::vector<int> released_;
  int live_ = 0;
};

}  // namespace iomux

#endif  // IOMUX_CONN_TABLE_H_
