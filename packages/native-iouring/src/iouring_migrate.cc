// io_uring engine: runtime fallback, settling operations before detach (see iouring_engine.h).
#ifdef __linux__

#include "iouring_engine.h"

namespace iomux {
namespace iouring {

// ---------------------------------------------------------------------------------------------
// Runtime fallback

bool IouringEngine::ops_in_flight(bool include_zombies) {
  for (int id = 0; id < sockets_.capacity(); ++id) {
    Socket* s = sockets_.get(id);
    if (s != nullptr && s->inflight > 0) return true;
  }
  return include_zombies && !zombies_.empty();
}

// One SQE cancels every operation of this ring (IORING_ASYNC_CANCEL_ANY | ALL, Linux 5.19, which
// the provided-buffer ring already requires), instead of one cancel per operation.
void IouringEngine::cancel_everything() {
  io_uring_sqe* sqe = ring_.get_sqe();
  if (sqe == nullptr && ring_.submit(false) >= 0) sqe = ring_.get_sqe();
  if (sqe == nullptr) return;  // settle() then finds the ring unusable and stops at its bound
  sqe->opcode = IORING_OP_ASYNC_CANCEL;
  sqe->fd = -1;
  sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
  sqe->user_data = static_cast<uint64_t>(kOpCancel) << 56;
}

// Cancels everything and collects completions into the sockets' state (bytes received go to the
// inbox, bytes a send got out leave the queue) until no socket (and, with include_zombies, no
// closed socket) has an operation in the kernel, or the budget is spent. True when none is left.
// Runs once for a whole migration, so detaching N sockets costs a few io_uring_enter calls, not N.
bool IouringEngine::settle(bool include_zombies) {
  long long deadline = now_ns() + kSettleBudgetNs;
  cancel_everything();
  bool first = true;
  for (;;) {
    while (backlog_head_ != backlog_.size()) absorb(backlog_[backlog_head_++]);
    backlog_.clear();
    backlog_head_ = 0;
    while (ring_.cq_ready() != 0) {
      unsigned head = ring_.cq_head();
      const io_uring_cqe* c = ring_.cqe_at(head);
      Completion cqe{c->user_data, c->res, c->flags};
      ring_.cq_release(head + 1);
      absorb(cqe);
    }
    bufs_.publish();
    if (!ops_in_flight(include_zombies)) return true;
    long long left = deadline - now_ns();
    if (left <= 0) return false;
    // The first enter submits the cancel and runs the task work that completes it; later ones
    // wait (bounded) for what is still on its way.
    int rc = first ? ring_.submit(true)
                   : ring_.submit_and_wait(1, left < 10000000LL ? left : 10000000LL);
    first = false;
    if (rc < 0) {
      ring_dead_ = true;
      return false;
    }
  }
}

// A completion collected while settling: it changes the socket's state but produces no event (the
// successor engine, or nobody at teardown, carries on from that state).
void IouringEngine::absorb(const Completion& cqe) {
  Op op;
  int id;
  bool final;
  Socket* s = claim(cqe, &op, &id, &final);
  if (s == nullptr) return;
  int res = cqe.res;
  switch (op) {
    case kOpRecv:
      if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
        unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
        if (bufs_.valid(bid)) {
          if (res > 0) {
            counters_.bytes_read += static_cast<uint64_t>(res);
            // Out of memory for the bytes: the stream cannot move whole; it closes with ENOMEM.
            if (!s->inbox.append(bufs_.buffer(bid), static_cast<size_t>(res))) {
              s->err_pending = ENOMEM;
            }
          }
          bufs_.recycle(bid);
        }
      }
      if (res == 0) s->eof_pending = true;
      if (final) s->arm = kIdle;
      break;
    case kOpAccept:
      // A connection the kernel accepted for a listener that is leaving: it goes with the
      // listener (DetachedSocket::accepted), announced by the successor; closed at teardown.
      if (res >= 0) s->accepted.push_back(res);
      if (final) s->arm = kIdle;
      break;
    case kOpAcceptPoll:
      s->arm = kIdle;
      s->accept_poll = false;
      break;
    case kOpSend:
      // A send that got part of its bytes out before the cancel reports that part: it leaves the
      // queue, so the successor sends each byte exactly once.
      s->send_inflight = false;
      if (res > 0) s->sent(static_cast<size_t>(res), &counters_);
      break;
    case kOpConnect:
    case kOpConnectPoll:
      s->connect_op = kOpNone;
      if (op == kOpConnect && res == 0) s->connecting = false;
      break;
    case kOpDatagramIn:
    case kOpRecvPoll:
      // What the poll saw is still in the socket: the next engine's poll sees it too.
      if (final) {
        s->arm = kIdle;
        s->recv_poll = false;
      }
      break;
    case kOpDatagramOut:
      s->out_poll = false;
      break;
    default:
      break;
  }
}

int IouringEngine::detach(int id, DetachedSocket* out) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  // A detach means the engine is being abandoned (runtime fallback): every socket will follow, so
  // all are settled at once.
  if (!migrating_) {
    migrating_ = true;
    if (ring_.fd() < 0) {
      ring_dead_ = true;  // closed by other code: never entered again
    } else {
      (void)settle(false);
    }
  }
  s = sockets_.get(id);
  if (s->inflight > 0) {
    // An operation the kernel did not give back. On a live ring it may still complete (sending
    // queued bytes, or taking received ones), so moving the socket could duplicate or lose
    // bytes: it stays here and closes with the engine. On a ring that can no longer be entered,
    // with DEFER_TASKRUN, nothing runs without our io_uring_enter, so the operation will never
    // touch the socket again: moving it is exact. So it is on any ring when the operations only
    // wait for readiness (a UDP socket's polls, a direct reader's, a listener's POLLIN wait): a
    // poll that completes after the move takes nothing from the socket. That matters where the
    // ring runs COOP_TASKRUN (a kernel whose eventfd ignores deferred work, see init()).
    bool frozen = ring_dead_ &&
                  ((ring_.flags() & IORING_SETUP_DEFER_TASKRUN) != 0 || only_polls_in_flight(*s));
    if (!frozen) return -ETIMEDOUT;
  }
  save_detached(id, out);  // a frozen operation still names its memory until the ring is torn down
  return 0;
}

bool IouringEngine::only_polls_in_flight(const Socket& s) const {
  if (s.send_inflight || s.connect_op != kOpNone) return false;
  // A UDP socket's receive and outbox waits are polls, and its sends are synchronous.
  if (s.datagram) return true;
  return s.arm == kIdle || s.recv_poll || s.accept_poll;
}

// What a detached socket takes along; the slot is released, the fd stays open.
void IouringEngine::save_detached(int id, DetachedSocket* out) {
  Socket* s = sockets_.get(id);
  out->fd = s->fd;
  out->unsent.clear();
  out->undelivered.clear();
  // At most one has bytes: a stream socket has no outbox, a datagram socket no byte queue.
  s->save(out);
  s->outbox.save(&out->unsent);
  out->datagram = s->datagram;
  out->max_datagram = s->max_datagram;
  out->accepted = std::move(s->accepted);
  s->accepted.clear();
  release(id);
}

// ---------------------------------------------------------------------------------------------
// Handing one socket over (conn.transfer, toNetSocket) while the ring serves the others

// Cancels this socket's operations only (by user_data) and waits, bounded, for their last
// completions: bytes a receive got go to the inbox, bytes a send got out leave the queue, as in a
// migration. Every other socket's completion met on the way is kept, in order, in backlog_ for
// the next poll, so nothing of theirs is lost or reordered. When the kernel does not give the
// operations back in time the socket stays, serving as before, and the caller hears ETIMEDOUT.
int IouringEngine::hand_off(int id, DetachedSocket* out) {
  // A migration under way or a failed ring: the engine is being abandoned anyway.
  if (migrating_ || broken_ != 0 || ring_.fd() < 0) return detach(id, out);
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  uint32_t g = gen(id);
  if (s->inflight > 0) {
    cancel_ops(id);
    if (fault_hand_off_) {
      // Injected: the cancels stay unreaped (the next poll submits them), as when the kernel
      // does not give the operations back in time.
      resume_after_failed_hand_off(id);
      return -ETIMEDOUT;
    }
    long long deadline = now_ns() + kHandOverBudgetNs;
    bool first = true;
    for (;;) {
      sort_out_completions(id, g);
      if (sockets_.get(id)->inflight == 0) break;
      long long left = deadline - now_ns();
      if (broken_ != 0 || (!first && left <= 0)) {
        resume_after_failed_hand_off(id);
        return broken_ != 0 ? broken_ : -ETIMEDOUT;
      }
      // The first enter submits the cancels and runs the task work that completes them; later
      // ones wait (bounded) for what is still on its way.
      int rc = first ? ring_.submit(true)
                     : ring_.submit_and_wait(1, left < 10000000LL ? left : 10000000LL);
      first = false;
      if (rc < 0) {
        broken_ = rc;  // the next poll reports it; this socket fails over with the rest
        (void)notifier_lost(notifier_.signal());
        resume_after_failed_hand_off(id);
        return rc;
      }
    }
  }
  save_detached(id, out);
  // Other sockets' completions moved to the backlog are handled by the next poll.
  if (work_left()) (void)notifier_lost(notifier_.signal());
  return 0;
}

// One pass over the backlog and the CQ: this socket's completions are absorbed (in order: the
// backlog is older than the ring), every other one stays in the backlog, in order.
void IouringEngine::sort_out_completions(int id, uint32_t g) {
  auto ours = [id, g](const Completion& c) {
    Op op = op_of(c.user_data);
    return op != kOpNone && op != kOpCancel && id_of(c.user_data) == id && gen_of(c.user_data) == g;
  };
  size_t keep = backlog_head_;
  for (size_t i = backlog_head_; i < backlog_.size(); ++i) {
    if (ours(backlog_[i])) {
      absorb(backlog_[i]);
    } else {
      backlog_[keep++] = backlog_[i];
    }
  }
  backlog_.resize(keep);
  while (ring_.cq_ready() != 0) {
    unsigned head = ring_.cq_head();
    const io_uring_cqe* c = ring_.cqe_at(head);
    Completion cqe{c->user_data, c->res, c->flags};
    ring_.cq_release(head + 1);
    if (ours(cqe)) {
      absorb(cqe);
    } else if (op_of(cqe.user_data) != kOpNone) {
      backlog_.push_back(cqe);
    }
  }
  bufs_.publish();
}

// The socket stays: what absorb() took becomes normal work again. Bytes and an EOF it read are
// delivered by the next poll; a receive, accept or send no longer in the kernel is armed again
// (an operation still being cancelled re-arms itself when its completion arrives). A send that
// emptied the queue is followed by a zero-length SENDMSG, so its DRAIN and a pending FIN go out
// through the ordinary completion path.
void IouringEngine::resume_after_failed_hand_off(int id) {
  Socket* s = sockets_.get(id);
  if (s->listener) {
    maybe_arm_accept(id);
    return;
  }
  if (s->datagram) {
    maybe_arm_datagram(id);
    if (!s->outbox.empty() && !s->out_poll) arm_datagram_out(id);
    return;
  }
  if (s->connecting) {
    if (s->connect_op == kOpNone) arm_connect_poll(id);
    return;
  }
  maybe_arm_recv(id);
  s = sockets_.get(id);
  if (s->input_held() && !s->paused) add_ready(id);
  bool flush_due =
      !s->queue.empty() || s->drain_pending || (s->shutdown_requested && !s->write_shut);
  if (!s->send_inflight && flush_due) arm_send(id, false);
}

int IouringEngine::adopt(DetachedSocket&& socket) {
  int id = sockets_.alloc();
  if (id < 0) return id;  // the fd stays the caller's
  next_generation(id);
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
  // Sockets from other engines may be blocking-mode (blocking_io); ours send synchronously.
  int flags = fcntl(s->fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) (void)fcntl(s->fd, F_SETFL, flags | O_NONBLOCK);
  if (s->listener) {
    int one = 1;
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    maybe_arm_accept(id);
  } else if (s->datagram) {
    maybe_arm_datagram(id);
    if (!s->outbox.empty()) arm_datagram_out(id);
  } else if (s->connecting) {
    arm_connect_poll(id);
  } else {
    s->resume_shutdown(s->fd);
    maybe_arm_recv(id);
    if (!s->queue.empty()) arm_send(id, false);
  }
  return id;  // had the ring failed meanwhile, the next poll reports it
}

}  // namespace iouring
}  // namespace iomux

#endif  // __linux__
