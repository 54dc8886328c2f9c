#include "readiness.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "socket_util.h"

namespace iomux {

namespace {
constexpr int kMaxIov = 64;
// A read smaller than this is not worth a syscall; the batch is treated as full instead.
constexpr size_t kMinRead = 4096;
}  // namespace

ReadinessEngine::ReadinessEngine(std::unique_ptr<Poller> poller, const EngineConfig& config)
    : poller_(std::move(poller)), config_(config) {
  ready_.resize(static_cast<size_t>(config.max_events));
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

ReadinessEngine::~ReadinessEngine() {
  for (int id = 0; id < sockets_.capacity(); ++id) {
    if (sockets_.get(id) != nullptr) close_socket(id);
  }
  if (reserve_fd_ >= 0) close_fd(reserve_fd_);
}

int ReadinessEngine::add_socket(int fd, bool listener, bool connecting, uint8_t interest) {
  int id = sockets_.alloc();
  if (id < 0) {
    close_fd(fd);
    return id;
  }
  Socket* s = sockets_.get(id);
  s->fd = fd;
  s->listener = listener;
  s->connecting = connecting;
  int rc = poller_->add(fd, id, interest);
  if (rc != 0) {
    close_fd(fd);
    sockets_.release(id);
    return rc;
  }
  s->interest = interest;
  return id;
}

int ReadinessEngine::listen(const ListenRequest& request) {
  int fd = open_listener(request);
  if (fd < 0) return fd;
  return add_socket(fd, true, false, kInterestRead);
}

int ReadinessEngine::connect(const sockaddr_storage& addr, socklen_t addr_len) {
  int fd = open_connecting(addr, addr_len);
  if (fd < 0) return fd;
  return add_socket(fd, false, true, kInterestWrite);
}

int ReadinessEngine::poll(EventSink* sink) {
  sockets_.recycle();
  ++counters_.polls;
  // Sockets reported ready last time but not served (the batch filled up) go first: a
  // level-triggered poller reports the same fds in the same order, which would starve the rest.
  size_t carried = 0;
  while (carried < backlog_.size() && !sink->full()) serve(backlog_[carried++], true, sink);
  backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<ptrdiff_t>(carried));
  if (backlog_.empty() && !sink->full()) {
    int max = sink->capacity < static_cast<int>(ready_.size()) ? sink->capacity
                                                               : static_cast<int>(ready_.size());
    int n = poller_->wait(ready_.data(), max);
    if (n < 0) return n;
    int served = 0;
    while (served < n && !sink->full()) serve(ready_[static_cast<size_t>(served++)], false, sink);
    backlog_.assign(ready_.begin() + served, ready_.begin() + n);
  }
  counters_.events += static_cast<uint64_t>(sink->count);
  return sink->count;
}

// A carried-over readiness may be stale (the id can even belong to a new socket by now); every
// step below then just meets EAGAIN, except a connect check, which only a fresh report may do.
void ReadinessEngine::serve(const Readiness& r, bool carried, EventSink* sink) {
  Socket* s = sockets_.get(r.token);
  if (s == nullptr) return;  // closed earlier in this batch
  if (s->listener) {
    accept_ready(r.token, sink);
  } else if (s->datagram) {
    if ((r.writable || r.failed) && !s->outbox.empty()) flush_datagrams(r.token, sink);
    s = sockets_.get(r.token);
    if (s != nullptr && (r.readable || r.failed) && !s->paused) {
      // The poller is level-triggered: whatever this batch leaves is reported again.
      (void)receive_into_sink(s->fd, r.token, s->max_datagram, sink, &counters_.bytes_read);
    }
  } else if (s->connecting) {
    if (!carried) connect_ready(r.token, sink);
  } else {
    if ((r.writable || r.failed) && !s->queue.empty() && !flush(r.token, sink)) return;
    s = sockets_.get(r.token);
    if (s != nullptr && (r.readable || r.failed) && !s->paused && !s->read_eof) {
      read_ready(r.token, sink);
    }
  }
}

void ReadinessEngine::accept_ready(int id, EventSink* sink) {
  while (!sink->full()) {
    int listen_fd = sockets_.get(id)->fd;
    int fd = accept_connection(listen_fd);
    if (fd == -EAGAIN || fd == -EWOULDBLOCK) return;
    if (fd == -ECONNABORTED || fd == -EPROTO) continue;
    if (fd == -EMFILE || fd == -ENFILE) fd = shed_connection(listen_fd, -fd);
    if (fd < 0) {
      ++counters_.accept_errors;
      sink->push(kEventAcceptError, id, -fd);
      return;
    }
    int conn = add_socket(fd, false, false, kInterestRead);
    if (conn < 0) {
      ++counters_.accept_errors;
      sink->push(kEventAcceptError, id, -conn);
      return;
    }
    ++counters_.accepted;
    sink->push(kEventAccept, conn, id);
  }
}

// Out of fds: the pending peer would make the listener readable forever. Give up the reserve fd,
// accept the peer and close it at once (it sees a reset), then take the reserve back. libuv does
// the same.
int ReadinessEngine::shed_connection(int listen_fd, int err) {
  if (reserve_fd_ < 0) return -err;
  close_fd(reserve_fd_);
  reserve_fd_ = -1;
  int fd = accept_connection(listen_fd);
  if (fd >= 0) close_fd(fd);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return -err;
}

void ReadinessEngine::connect_ready(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  int err = pending_error(s->fd);
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err != 0) {
    close_socket(id);
    sink->push(kEventConnect, id, err);
    return;
  }
  s->connecting = false;
  // end() while connecting, with nothing to send: the FIN goes out now.
  if (s->shutdown_requested && s->queue.empty() && !s->write_shut) {
    ::shutdown(s->fd, SHUT_WR);
    s->write_shut = true;
  }
  int rc = update_interest(id);
  if (rc != 0) {
    close_socket(id);
    sink->push(kEventConnect, id, -rc);
    return;
  }
  sink->push(kEventConnect, id, 0);
}

void ReadinessEngine::read_ready(int id, EventSink* sink) {
  int fd = sockets_.get(id)->fd;
  for (;;) {
    size_t room = sink->slab_capacity - sink->slab_used;
    size_t want = room < config_.read_chunk ? room : config_.read_chunk;
    if (want < kMinRead && want < config_.read_chunk) {
      sink->slab_exhausted = true;  // ends this batch; the fd stays readable for the next one
      return;
    }
    ssize_t n;
    do {
      n = ::read(fd, sink->slab + sink->slab_used, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(id, errno, sink);
      return;
    }
    if (n == 0) break;
    sink->push(kEventData, id, static_cast<int32_t>(sink->slab_used), static_cast<int32_t>(n));
    sink->slab_used += static_cast<size_t>(n);
    counters_.bytes_read += static_cast<uint64_t>(n);
    // A short read means the kernel buffer is empty for now; a full one, that more may wait.
    if (static_cast<size_t>(n) < want || sink->full()) return;
  }
  Socket* s = sockets_.get(id);
  s->read_eof = true;
  sink->push(kEventEnd, id);
  if (s->write_shut) {
    close_socket(id);
    sink->push(kEventClose, id, 0);
    return;
  }
  int rc = update_interest(id);
  if (rc != 0) fail(id, -rc, sink);
}

bool ReadinessEngine::flush(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  iovec iov[kMaxIov];
  while (!s->queue.empty()) {
    int count = s->queue.gather(iov, kMaxIov);
    ssize_t n = send_vectored(s->fd, iov, count);
    if (n == -EAGAIN || n == -EWOULDBLOCK) break;
    if (n < 0) {
      fail(id, static_cast<int>(-n), sink);
      return false;
    }
    counters_.bytes_written += static_cast<uint64_t>(n);
    s->queue.consume(static_cast<size_t>(n));
  }
  if (!s->queue.empty()) return true;
  if (s->drain_pending) {
    s->drain_pending = false;
    sink->push(kEventDrain, id);
  }
  if (s->shutdown_requested && finish_shutdown(id)) {
    sink->push(kEventClose, id, 0);
    return false;
  }
  int rc = update_interest(id);
  if (rc != 0) {
    fail(id, -rc, sink);
    return false;
  }
  return true;
}

int64_t ReadinessEngine::write(int id, const iovec* bufs, int count) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  if (s->shutdown_requested) return -EPIPE;
  size_t sent = 0;
  if (!s->connecting && s->queue.empty()) {
    // Try the send at once, like uv_try_write, in windows of kMaxIov buffers until the kernel
    // stops taking bytes; only the rest is copied into the queue.
    size_t total = 0;
    for (int i = 0; i < count; ++i) total += bufs[i].iov_len;
    while (sent < total) {
      iovec window[kMaxIov];
      int filled = 0;
      size_t window_bytes = 0;
      size_t skip = sent;
      for (int i = 0; i < count && filled < kMaxIov; ++i) {
        if (skip >= bufs[i].iov_len) {
          skip -= bufs[i].iov_len;
          continue;
        }
        window[filled].iov_base = static_cast<uint8_t*>(bufs[i].iov_base) + skip;
        window[filled].iov_len = bufs[i].iov_len - skip;
        window_bytes += window[filled].iov_len;
        skip = 0;
        ++filled;
      }
      ssize_t n = send_vectored(s->fd, window, filled);
      if (n == -EAGAIN || n == -EWOULDBLOCK) break;
      if (n < 0) return n;
      sent += static_cast<size_t>(n);
      counters_.bytes_written += static_cast<uint64_t>(n);
      if (static_cast<size_t>(n) < window_bytes) break;  // the socket buffer is full
    }
  }
  bool was_empty = s->queue.empty();
  if (!s->queue.append(bufs, count, sent)) return -ENOMEM;
  if (s->queue.empty()) return 0;
  ++counters_.writes_queued;
  s->drain_pending = true;
  if (was_empty) {
    int rc = update_interest(id);
    if (rc != 0) return rc;
  }
  return static_cast<int64_t>(s->queue.size());
}

int ReadinessEngine::set_reading(int id, bool reading) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  s->paused = !reading;
  return update_interest(id);
}

int ReadinessEngine::shutdown(int id, ShutdownResult* result) {
  Socket* s = sockets_.get(id);
  *result = ShutdownResult::kPending;
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  if (s->shutdown_requested) return 0;
  s->shutdown_requested = true;
  if (s->connecting || !s->queue.empty()) return 0;
  if (finish_shutdown(id)) {
    *result = ShutdownResult::kClosed;
    return 0;
  }
  return update_interest(id);
}

bool ReadinessEngine::finish_shutdown(int id) {
  Socket* s = sockets_.get(id);
  if (!s->write_shut) {
    // ENOTCONN means the peer already reset: the read side reports that.
    (void)::shutdown(s->fd, SHUT_WR);
    s->write_shut = true;
  }
  if (!s->read_eof) return false;
  close_socket(id);
  return true;
}

int ReadinessEngine::destroy(int id) {
  if (sockets_.get(id) == nullptr) return -EBADF;
  close_socket(id);
  return 0;
}

int ReadinessEngine::address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  return socket_address(s->fd, peer, out, len);
}

int ReadinessEngine::update_interest(int id) {
  Socket* s = sockets_.get(id);
  uint8_t want = kInterestNone;
  if (s->listener) {
    want = s->paused ? kInterestNone : kInterestRead;
  } else if (s->datagram) {
    if (!s->paused) want |= kInterestRead;
    if (!s->outbox.empty()) want |= kInterestWrite;
  } else {
    if (!s->paused && !s->read_eof) want |= kInterestRead;
    if (s->connecting || !s->queue.empty()) want |= kInterestWrite;
  }
  if (want == s->interest) return 0;
  int rc;
  if (want == kInterestNone) {
    rc = poller_->remove(s->fd);
  } else if (s->interest == kInterestNone) {
    rc = poller_->add(s->fd, id, want);
  } else {
    rc = poller_->modify(s->fd, id, want);
  }
  if (rc == 0) s->interest = want;
  return rc;
}

// Readiness engines read straight into the batch, so nothing read is ever held back here.
int ReadinessEngine::detach(int id, DetachedSocket* out) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  // The poller may be the thing that failed; the fd is handed over either way.
  if (s->interest != kInterestNone) (void)poller_->remove(s->fd);
  out->fd = s->fd;
  static_cast<SocketFlags&>(*out) = *s;
  out->datagram = s->datagram;
  out->max_datagram = s->max_datagram;
  // At most one has bytes: a stream socket has no outbox, a datagram socket no byte queue.
  s->queue.copy_to(&out->unsent);
  s->outbox.save(&out->unsent);
  sockets_.release(id);
  return 0;
}

int ReadinessEngine::adopt(DetachedSocket&& socket) {
  // Thread backends hand over blocking fds; this engine needs them non-blocking.
  int flags = fcntl(socket.fd, F_GETFL);
  if (flags < 0 || fcntl(socket.fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
  int id = sockets_.alloc();
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->fd = socket.fd;
  static_cast<SocketFlags&>(*s) = socket;
  s->datagram = socket.datagram;
  s->max_datagram = socket.max_datagram;
  int rc = restore_unsent(socket, &s->queue, &s->outbox);
  if (rc != 0) {
    sockets_.release(id);
    return rc;
  }
  // end() was called and everything was already sent: the FIN may not have gone out yet.
  if (s->shutdown_requested && s->queue.empty() && !s->connecting && !s->write_shut) {
    ::shutdown(s->fd, SHUT_WR);
    s->write_shut = true;
  }
  rc = update_interest(id);
  if (rc != 0) {
    sockets_.release(id);
    return rc;
  }
  return id;
}

int ReadinessEngine::udp_open(const UdpRequest& request) {
  int fd = open_datagram(request);
  if (fd < 0) return fd;
  int id = add_socket(fd, false, false, kInterestRead);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->datagram = true;
  s->max_datagram = request.max_datagram;
  s->outbox.read_fault_switch();
  return id;
}

int ReadinessEngine::socket_fd(int id) {
  Socket* s = sockets_.get(id);
  return s == nullptr ? -EBADF : s->fd;
}

int ReadinessEngine::udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                                    DatagramBatchResult* result) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->datagram) return -EBADF;
  s->outbox.send_batch(s->fd, datagrams, count, &counters_.bytes_written, result);
  if (result->queued == 0) return 0;
  counters_.writes_queued += static_cast<uint64_t>(result->queued);
  return update_interest(id);  // write interest while the outbox holds datagrams
}

void ReadinessEngine::flush_datagrams(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  s->outbox.flush(s->fd, id, sink, &counters_.bytes_written);
  int rc = update_interest(id);
  if (rc != 0) fail(id, -rc, sink);
}

void ReadinessEngine::close_socket(int id) {
  Socket* s = sockets_.get(id);
  if (s->interest != kInterestNone) (void)poller_->remove(s->fd);
  close_fd(s->fd);
  ++counters_.closed;
  sockets_.release(id);
}

void ReadinessEngine::fail(int id, int err, EventSink* sink) {
  close_socket(id);
  sink->push(kEventClose, id, err);
}

}  // namespace iomux
