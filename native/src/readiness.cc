#include "readiness.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "notifier.h"
#include "socket_options.h"
#include "socket_util.h"

namespace iomux {

namespace {
// A read smaller than this is not worth a syscall; the batch is treated as full instead.
constexpr size_t kMinRead = 4096;

// Whether a connect in progress has finished (writable, failed or hung up), asked of the kernel
// now. A carried-over readiness cannot tell (it may be stale, and SO_ERROR reads 0 while the
// connect is still in progress); a failed poll() answers "not yet", and the socket stays watched.
bool connect_settled(int fd) {
  pollfd p{};
  p.fd = fd;  // a SOCKET on Windows (platform_win32_posix.h): assigned, not narrowed
  p.events = POLLOUT;
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}
}  // namespace

ReadinessEngine::ReadinessEngine(std::unique_ptr<Poller> poller, const EngineConfig& config)
    : poller_(std::move(poller)), config_(config) {
  ready_.resize(static_cast<size_t>(config.max_events));
  (void)reserve_.open();  // without a spare the engine still runs; it just cannot shed on EMFILE
  fault_after_ = config.tune("faultKernelAfter", -1);
  fault_errno_ = static_cast<int>(config.tune("faultKernelErrno", EIO));
}

ReadinessEngine::~ReadinessEngine() {
  for (int id = 0; id < sockets_.capacity(); ++id) {
    if (sockets_.get(id) != nullptr) close_socket(id);
  }
}

int ReadinessEngine::add_socket(int fd, bool listener, bool connecting, uint8_t interest) {
  int id = sockets_.alloc_owning(fd);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->listener = listener;
  s->connecting = connecting;
  int rc = poller_->add(fd, id, interest);
  if (rc == 0 && !polling_) rc = poller_->commit();
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

int ReadinessEngine::connect(const ConnectRequest& request) {
  int fd = open_connecting(request);
  if (fd < 0) return fd;
  return add_socket(fd, false, true, kInterestWrite);
}

int ReadinessEngine::poll(EventSink* sink) {
  if (broken_ != 0) return broken_;
  sockets_.recycle();
  ++counters_.polls;
  polling_ = true;
  // Sockets reported ready last time but not served (the batch filled up) go first: a
  // level-triggered poller reports the same fds in the same order, which would starve the rest.
  size_t carried = 0;
  while (carried < backlog_.size() && !sink->full()) serve(backlog_[carried++], true, sink);
  backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<ptrdiff_t>(carried));
  if (backlog_.empty() && !sink->full()) {
    int max = sink->capacity < static_cast<int>(ready_.size()) ? sink->capacity
                                                               : static_cast<int>(ready_.size());
    int n = wait_kernel(max);
    if (n < 0) {
      // The poller failed after this poll may have served leftovers (bytes read, accepts, closes):
      // that batch goes to JS first, and the failure follows through broken() and the next poll.
      polling_ = false;
      broken_ = n;
      if (sink->count == 0) return n;
      counters_.events += static_cast<uint64_t>(sink->count);
      return sink->count;
    }
    int served = 0;
    while (served < n && !sink->full()) serve(ready_[static_cast<size_t>(served++)], false, sink);
    backlog_.assign(ready_.begin() + served, ready_.begin() + n);
  }
  polling_ = false;
  // A refused change is reported by the next wait() as a failed socket; nothing to undo here.
  (void)poller_->commit();
  counters_.events += static_cast<uint64_t>(sink->count);
  return sink->count;
}

int ReadinessEngine::wait_kernel(int max) {
  // Fault injection (faults.kernelAfter): the poller's own wait fails after N successful ones.
  if (fault_after_ >= 0 && waits_ >= fault_after_) return -fault_errno_;
  int n = poller_->wait(ready_.data(), max);
  if (n >= 0) ++waits_;
  return n;
}

// A carried-over readiness may be stale (the id can even belong to a new socket by now); every
// step below then just meets EAGAIN, except a connect check, which asks the kernel again first:
// serving a connect only from fresh reports starves it while leftovers fill every batch.
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
    if (!carried || connect_settled(s->fd)) connect_ready(r.token, sink);
  } else {
    if ((r.writable || r.failed) && !s->queue.empty() && !flush(r.token, sink)) return;
    s = sockets_.get(r.token);
    if (s != nullptr && (r.readable || r.failed) && s->wants_input() && !s->input_held()) {
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
    if (fd == -EMFILE || fd == -ENFILE) {
      // The pending peer would keep the listener readable forever: shed it, report the error.
      (void)reserve_.shed(listen_fd);
    }
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

void ReadinessEngine::connect_ready(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  int err = pending_error(s->fd);
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err != 0) {
    close_socket(id);
    sink->push(kEventConnect, id, err);
    return;
  }
  // Queued bytes go out on the next writability (update_interest asks for it); an end() that came
  // while connecting with nothing queued sends the FIN now.
  (void)s->connected(s->fd);
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
      n = ::recv(fd, sink->slab + sink->slab_used, want, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      int err = errno;
      if (err != EAGAIN && err != EWOULDBLOCK)
        settle(id, sockets_.get(id)->on_read_error(id, err, sink));
      return;
    }
    if (n == 0) break;
    StreamState::took_into_slab(id, static_cast<size_t>(n), sink, &counters_);
    // A short read means the kernel buffer is empty for now; a full one, that more may wait.
    if (static_cast<size_t>(n) < want || sink->full()) return;
  }
  if (settle(id, sockets_.get(id)->on_eof(id, sink))) return;
  int rc = update_interest(id);
  if (rc != 0) fail(id, -rc, sink);
}

bool ReadinessEngine::flush(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  int rc = s->flush(s->fd, &counters_);
  if (rc < 0) {
    fail(id, -rc, sink);
    return false;
  }
  if (rc == 0 && settle(id, s->queue_flushed(s->fd, id, sink))) return false;
  rc = update_interest(id);  // write interest only while bytes remain
  if (rc != 0) {
    fail(id, -rc, sink);
    return false;
  }
  return true;
}

int64_t ReadinessEngine::write(int id, const iovec* bufs, int count, SharedPayload* shared) {
  Socket* s = sockets_.stream(id);
  if (s == nullptr) return -EBADF;
  bool started_queue = false;
  int64_t queued = s->write(s->fd, bufs, count, &counters_, &started_queue, shared);
  if (started_queue) {
    int rc = update_interest(id);
    if (rc != 0) return rc;
  }
  return queued;
}

int ReadinessEngine::set_reading(int id, bool reading) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  s->paused = !reading;
  return update_interest(id);
}

int ReadinessEngine::shutdown(int id, ShutdownResult* result) {
  Socket* s = sockets_.stream(id);
  *result = ShutdownResult::kPending;
  if (s == nullptr) return -EBADF;
  if (settle(id, s->request_shutdown(s->fd, result))) return 0;
  return update_interest(id);
}

int ReadinessEngine::destroy(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  s->reset_if_input_unread(s->fd);
  close_socket(id);
  return 0;
}

int ReadinessEngine::address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
  return sockets_.address(id, peer, out, len);
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
  if (rc == 0 && !polling_) rc = poller_->commit();
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
  out->datagram = s->datagram;
  out->max_datagram = s->max_datagram;
  // At most one has bytes: a stream socket has no outbox, a datagram socket no byte queue.
  s->save(out);
  s->outbox.save(&out->unsent);
  sockets_.release(id);
  return 0;
}

int ReadinessEngine::adopt(DetachedSocket&& socket) {
  // Thread backends hand over blocking fds; this engine needs them non-blocking.
  int rc = set_blocking(socket.fd, false);
  if (rc != 0) return rc;
  int id = sockets_.alloc();
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->fd = socket.fd;
  s->datagram = socket.datagram;
  s->max_datagram = socket.max_datagram;
  if (socket.datagram) {
    static_cast<SocketFlags&>(*s) = socket;
    rc = s->outbox.restore(socket.unsent);
  } else {
    rc = s->restore(socket);
  }
  if (rc != 0) {
    sockets_.release(id);
    return rc;
  }
  // end() was called and everything was already sent: the FIN may not have gone out yet.
  if (!s->datagram) s->resume_shutdown(s->fd);
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

int ReadinessEngine::socket_fd(int id) { return sockets_.fd_of(id); }

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

bool ReadinessEngine::settle(int id, StreamFate fate) {
  if (fate != StreamFate::kClose) return false;
  close_socket(id);
  return true;
}

void ReadinessEngine::fail(int id, int err, EventSink* sink) {
  // A local failure (a send or interest change the kernel refused): RST, so the peer cannot take
  // the stream cut here for a complete one.
  (void)reset_on_close(sockets_.get(id)->fd);
  settle(id, StreamState::fail(id, err, sink));
}

}  // namespace iomux
