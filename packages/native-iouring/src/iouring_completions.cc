// io_uring engine: what each completion does to its socket (see iouring_engine.h).
#ifdef __linux__

#include "iouring_engine.h"
#include "socket_options.h"

namespace iomux {
namespace iouring {

void IouringEngine::on_accept(int id, int res, bool final, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (final) s->arm = kIdle;
  if (res >= 0) {
    if (!final) accept_multishot_seen_ = true;
    // TCP_NODELAY comes from the listener: Linux copies it to accepted sockets.
    int conn = add_socket(res, false, false);
    if (conn < 0) {
      ++counters_.accept_errors;
      sink->push(kEventAcceptError, id, -conn);
    } else {
      ++counters_.accepted;
      sink->push(kEventAccept, conn, id);
      arm_recv(conn);
    }
  } else {
    int err = -res;
    switch (err) {
      case ECANCELED:
      case ECONNABORTED:
      case EPROTO:
      case EAGAIN:
      case EINTR:
        break;
      case EINVAL:
        if (multishot_accept_ && !accept_multishot_seen_) {
          multishot_accept_ = false;  // a kernel without IORING_ACCEPT_MULTISHOT
          break;
        }
        [[fallthrough]];
      default: {
        bool out_of_fds = err == EMFILE || err == ENFILE;
        // io_uring reserves the fd before it looks for a connection, so EMFILE comes back even
        // with nobody waiting. It is reported (as readiness would) only when a peer was pending;
        // that peer is shed so the backlog does not keep failing us.
        if (!out_of_fds || reserve_.shed(sockets_.get(id)->fd)) {
          ++counters_.accept_errors;
          sink->push(kEventAcceptError, id, err);
        }
        if (final) {
          if (out_of_fds) {
            // Retrying the accept would fail at once, forever: wait until a peer is pending.
            Socket* l = sockets_.get(id);
            if (!l->paused && l->arm == kIdle) arm_accept_poll(id);
          } else {
            // Re-armed at the end of this poll, not now: one error per listener per poll, as
            // with readiness, instead of spinning on a condition that persists.
            defer_arm(id);
          }
        }
        return;
      }
    }
  }
  if (final) maybe_arm_accept(id);
}

void IouringEngine::on_recv(int id, const Completion& cqe, bool final, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (final) s->arm = kIdle;
  int res = cqe.res;
  if (res > 0 && !final) recv_multishot_seen_ = true;
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
    if (bufs_.valid(bid)) {
      if (res > 0) {
        counters_.bytes_read += static_cast<uint64_t>(res);
        take_data(id, bufs_.buffer(bid), static_cast<size_t>(res), sink);
      }
      bufs_.recycle(bid);
    }
  }
  if (res > 0) {
    s = sockets_.get(id);
    if (s == nullptr) return;  // take() found no memory for the inbox: closed
    if (!s->direct && tuning_.direct_recv == kDirectAuto &&
        static_cast<unsigned>(res) >= bufs_.size()) {
      // A whole buffer: more was waiting, a bulk stream. From here on it reads directly (no copy);
      // the poll is armed once this receive's last completion is in, so bytes stay in order.
      s->direct = true;
      if (!final) cancel_arm(id);
    }
    if (final) maybe_arm_recv(id);  // single-shot, or ended
    return;
  }
  if (res == 0) {
    s = sockets_.get(id);
    if (s == nullptr) return;  // take() found no memory for the inbox: closed
    settle_fate(id, s->on_eof(id, sink));
    s = sockets_.get(id);
    if (s != nullptr && s->input_held() && !s->paused) add_ready(id);
    return;
  }
  int err = -res;
  switch (err) {
    case ECANCELED:  // paused (or resumed again before the cancel landed)
    case EINTR:
    case EAGAIN:
      maybe_arm_recv(id);
      return;
    case ENOBUFS:  // the buffer ring ran dry; the data waits in the socket
      defer_arm(id);
      return;
    case EINVAL:
      if (multishot_recv_ && !recv_multishot_seen_) {
        multishot_recv_ = false;  // a kernel without IORING_RECV_MULTISHOT (before 6.0)
        maybe_arm_recv(id);
        return;
      }
      break;
    default:
      break;
  }
  s = sockets_.get(id);
  if (s == nullptr) return;
  settle_fate(id, s->on_read_error(id, err, sink));
  s = sockets_.get(id);
  if (s != nullptr && s->input_held() && !s->paused) add_ready(id);
}

void IouringEngine::on_recv_poll(int id, int res, bool final, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (final) {
    s->arm = kIdle;
    s->recv_poll = false;
  }
  if (res > 0) {
    s->readable = true;
    if (!s->paused) {
      // Held bytes (from the copy path) go out first: deliver_ready reads after them.
      if (s->input_held() || sink->full() || read_direct(id, sink)) add_ready(id);
    }
    s = sockets_.get(id);
    if (s == nullptr) return;  // the read ended the stream
  }
  if (!final) return;
  // The poll ended (cancelled, single-shot, or by the kernel): arm it again while input is
  // wanted. After an error other than a cancel, only at the end of this poll, so a persisting one
  // cannot spin.
  if (res < 0 && res != -ECANCELED) {
    defer_arm(id);
  } else {
    maybe_arm_recv(id);
  }
}

// One recv() per readiness: the one-shot poll armed after it checks the socket's level, so bytes
// left behind (a full read, a short count, an EAGAIN that did not mean empty) or a FIN fire it
// again at once and are read in a later round of this poll. A second recv() here would mostly
// answer EAGAIN (epoll's engine pays it: about one call per event on a 4 KiB pipelined echo);
// the re-armed polls of all sockets travel in one io_uring_enter.
bool IouringEngine::read_direct(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (!s->readable || !s->wants_input() || s->input_held()) return false;
  if (sink->full()) return true;
  size_t room = sink->slab_capacity - sink->slab_used;
  size_t want = room < config_.read_chunk ? room : config_.read_chunk;
  if (want < kMinDirectRead && want < config_.read_chunk) {
    sink->slab_exhausted = true;  // ends this batch; the socket stays readable for the next one
    return true;
  }
  ssize_t n;
  do {
    n = ::recv(s->fd, sink->slab + sink->slab_used, want, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  s->readable = false;
  if (n > 0) {
    StreamState::took_into_slab(id, static_cast<size_t>(n), sink, &counters_);
    drained(id, static_cast<size_t>(n));
    return false;
  }
  if (n == 0) {
    settle_fate(id, s->on_eof(id, sink));
    // Nothing more to read: the poll would only report the FIN again.
    if (sockets_.get(id) != nullptr) cancel_arm(id);
    return false;
  }
  int err = errno;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    drained(id, 0);
    return false;
  }
  // The stream ends here (nothing is held, it is not paused: see the first condition). RST, as
  // for any local failure: an empty receive queue would otherwise close with a FIN, and the peer
  // could take the cut stream for a complete one.
  (void)reset_on_close(s->fd);
  settle_fate(id, s->on_read_error(id, err, sink));
  if (sockets_.get(id) != nullptr) cancel_arm(id);
  return false;
}

// A direct reader's recv() brought `got` bytes (0: EAGAIN). With kDirectAuto, small wake-ups in
// a row send it back to the RECV: the poll is cancelled and its last completion
// arms the RECV (maybe_arm_recv), so no byte is read by both and none out of order.
void IouringEngine::drained(int id, size_t got) {
  Socket* s = sockets_.get(id);
  if (tuning_.direct_recv != kDirectAuto || !s->direct) return;
  if (got >= bufs_.size()) {
    s->small_drains = 0;
    return;
  }
  if (++s->small_drains < kSmallDrainsToLeave) return;
  s->small_drains = 0;
  s->direct = false;
  cancel_arm(id);
}

void IouringEngine::take_data(int id, const uint8_t* data, size_t len, EventSink* sink) {
  Socket* s = sockets_.get(id);
  settle_fate(id, s->take(id, data, len, sink));
  s = sockets_.get(id);
  if (s != nullptr && s->input_held() && !s->paused) add_ready(id);
}

void IouringEngine::add_ready(int id) {
  Socket* s = sockets_.get(id);
  if (!s->in_ready) {
    s->in_ready = true;
    ready_.push_back(Ref{id, gen(id)});
  }
  kick();
}

void IouringEngine::deliver_ready(EventSink* sink) {
  if (ready_.empty()) return;
  size_t keep = 0;
  for (size_t i = 0; i < ready_.size(); ++i) {
    Ref r = ready_[i];
    Socket* s = live(r.id, r.gen);
    if (s == nullptr) continue;
    if (s->paused) {
      s->in_ready = false;  // listed again on resume
      continue;
    }
    if (sink->full()) {
      ready_[keep++] = r;
      continue;
    }
    if (s->datagram) {
      if (drain_datagrams(s, r.id, sink)) {
        ready_[keep++] = r;
      } else {
        s->in_ready = false;
      }
      continue;
    }
    bool more = false;
    StreamFate fate = s->deliver(r.id, sink, &more);
    if (fate == StreamFate::kClose) {
      close_socket(r.id);
      continue;
    }
    if (more) {
      ready_[keep++] = r;
      continue;
    }
    // A direct reader reads after its held bytes, or reads on where the last batch ran full.
    if (s->direct && s->readable && read_direct(r.id, sink)) {
      ready_[keep++] = r;
      continue;
    }
    s = sockets_.get(r.id);
    if (s != nullptr) s->in_ready = false;
  }
  ready_.resize(keep);
}

void IouringEngine::on_send(int id, int res, EventSink* sink) {
  Socket* s = sockets_.get(id);
  s->send_inflight = false;
  if (res < 0) {
    int err = -res;
    if (err == EAGAIN || err == EINTR || err == ECANCELED) {
      if (!s->queue.empty()) arm_send(id, false);
      return;
    }
    fail(id, err, sink);
    return;
  }
  s->sent(static_cast<size_t>(res), &counters_);
  after_send(id, false, sink);
}

// The queue moved: send more, or report DRAIN and apply a pending shutdown once it is empty.
void IouringEngine::after_send(int id, bool poll_first, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (!s->queue.empty()) {
    arm_send(id, poll_first);
    return;
  }
  settle_fate(id, s->queue_flushed(s->fd, id, sink));
}

// Sends queued bytes synchronously (after connect), then goes on as after a send completion.
void IouringEngine::flush_now(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  int rc = s->flush(s->fd, &counters_);
  if (rc < 0) {
    fail(id, -rc, sink);
    return;
  }
  after_send(id, rc == 1, sink);
}

void IouringEngine::on_connect(int id, Op op, int res, EventSink* sink) {
  Socket* s = sockets_.get(id);
  s->connect_op = kOpNone;
  int err;
  if (op == kOpConnectPoll) {
    err = res < 0 ? -res : pending_error(s->fd);
  } else {
    err = res < 0 ? -res : 0;
  }
  if (err == EINPROGRESS || err == EALREADY || err == EAGAIN || err == EINTR) {
    arm_connect_poll(id);  // wait for writability, then read SO_ERROR
    return;
  }
  if (err != 0) {
    close_socket(id);
    sink->push(kEventConnect, id, err);
    return;
  }
  bool send = s->connected(s->fd);
  s->memory.reset();
  sink->push(kEventConnect, id, 0);
  maybe_arm_recv(id);
  if (send) flush_now(id, sink);
}

void IouringEngine::on_datagram_in(int id, int res, bool final, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (final) s->arm = kIdle;
  if (res > 0) {
    s->readable = true;  // POLLIN, or POLLERR for an ICMP error that recvmmsg reports
    if (!s->paused && (sink->full() || drain_datagrams(s, id, sink))) add_ready(id);
  }
  if (!final) return;
  // The kernel ended the multishot poll (or, single-shot, it fired): arm it again. After an error
  // other than a cancel (pause), only at the end of this poll, so a persisting one cannot spin.
  if (res < 0 && res != -ECANCELED) {
    defer_arm(id);
  } else {
    maybe_arm_datagram(id);
  }
}

bool IouringEngine::drain_datagrams(Socket* s, int id, EventSink* sink) {
  if (s->paused || !s->readable) return false;
  ReceiveOutcome outcome =
      receive_into_sink(s->fd, id, s->max_datagram, sink, &counters_.bytes_read);
  if (outcome == ReceiveOutcome::kDrained) s->readable = false;
  return s->readable;
}

void IouringEngine::on_datagram_out(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  s->out_poll = false;
  // Whatever the poll reported (writable, an error, a cancel), sendmmsg tells what holds now.
  s->outbox.flush(s->fd, id, sink, &counters_.bytes_written);
  if (!s->outbox.empty()) arm_datagram_out(id);
}

void IouringEngine::close_socket(int id) {
  Socket* s = sockets_.get(id);
  cancel_ops(id);
  // An SQE naming this fd that the kernel has not read yet would reach whatever socket gets the
  // number next: it becomes a NOP (its completion still settles the zombie's count).
  ring_.withdraw(s->fd, [](uint64_t ud) { return retag(ud, kOpVoid); });
  close_fd(s->fd);
  for (int fd : s->accepted) close_fd(fd);  // accepted while settling, never announced
  s->accepted.clear();
  ++counters_.closed;
  release(id);
}

// Frees the slot. A socket with operations in flight leaves a zombie holding the memory they may
// still touch (its msghdr, queued bytes) until their last completion arrives.
void IouringEngine::release(int id) {
  Socket* s = sockets_.get(id);
  if (s->inflight > 0) {
    Zombie& z = zombies_[zombie_key(id, gen(id))];
    z.inflight = s->inflight;
    z.memory = std::move(s->memory);
    z.queue = std::move(s->queue);
  }
  sockets_.release(id);
}

void IouringEngine::fail(int id, int err, EventSink* sink) {
  // A local failure: RST, so the peer cannot take the stream cut here for a complete one.
  (void)reset_on_close(sockets_.get(id)->fd);
  close_socket(id);
  sink->push(kEventClose, id, err);
}

}  // namespace iouring
}  // namespace iomux

#endif  // __linux__
