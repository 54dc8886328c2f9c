// io_uring engine: preparing SQEs (see iouring_engine.h).
#ifdef __linux__

#include "iouring_engine.h"

namespace iomux {
namespace iouring {

// ---------------------------------------------------------------------------------------------
// Submissions

io_uring_sqe* IouringEngine::get_sqe() {
  io_uring_sqe* sqe = ring_.get_sqe();
  if (sqe != nullptr) return sqe;
  int rc = ring_.submit(false);  // the SQ is full: hand it to the kernel to make room
  if (rc >= 0) sqe = ring_.get_sqe();
  if (sqe == nullptr && rc >= 0) {
    // The kernel refused more (EBUSY: its CQ overflow list is backed up). Make room in the CQ,
    // let it flush, and try once more.
    stash_cq();
    rc = ring_.submit(true);
    if (rc >= 0) sqe = ring_.get_sqe();
  }
  if (sqe == nullptr) {
    broken_ = rc < 0 ? rc : -EBUSY;
    (void)notifier_lost(notifier_.signal());  // the next poll reports the failure
  }
  return sqe;
}

void IouringEngine::arm_recv(int id) {
  Socket* s = sockets_.get(id);
  if (tuning_.direct_recv == kDirectAlways) s->direct = true;
  if (s->direct) {
    arm_recv_poll(id);
    return;
  }
  // Anything the poll saw and was not read yet goes to this receive now.
  s->readable = false;
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;
  sqe->opcode = IORING_OP_RECV;
  sqe->fd = s->fd;
  sqe->ioprio = multishot_recv_ ? IORING_RECV_MULTISHOT : 0;
  sqe->flags = IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group();
  sqe->len = 0;  // the buffer's size
  sqe->user_data = pack(kOpRecv, id, gen(id));
  s->arm = kArmed;
  s->recv_poll = false;
  ++s->inflight;
  kick();
}

void IouringEngine::arm_accept(int id) {
  Socket* s = sockets_.get(id);
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;
  sqe->opcode = IORING_OP_ACCEPT;
  sqe->fd = s->fd;
  sqe->ioprio = multishot_accept_ ? IORING_ACCEPT_MULTISHOT : 0;
  sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  sqe->user_data = pack(kOpAccept, id, gen(id));
  s->arm = kArmed;
  s->accept_poll = false;
  ++s->inflight;
  kick();
}

void IouringEngine::arm_send(int id, bool poll_first) {
  Socket* s = sockets_.get(id);
  if (!s->memory) s->memory = std::make_unique<OpMemory>();
  OpMemory* m = s->memory.get();
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;
  int count = s->queue.gather(m->iov, kMaxIov);
  std::memset(&m->msg, 0, sizeof(m->msg));
  m->msg.msg_iov = m->iov;
  m->msg.msg_iovlen = static_cast<size_t>(count);
  sqe->opcode = IORING_OP_SENDMSG;
  sqe->fd = s->fd;
  sqe->addr = reinterpret_cast<uint64_t>(&m->msg);
  sqe->len = 1;
  sqe->msg_flags = MSG_NOSIGNAL;
  // Straight after a short synchronous send the socket buffer is full: wait for room first.
  sqe->ioprio = poll_first ? IORING_RECVSEND_POLL_FIRST : 0;
  sqe->user_data = pack(kOpSend, id, gen(id));
  s->send_inflight = true;
  ++s->inflight;
  kick();
}

void IouringEngine::arm_connect(int id) {
  Socket* s = sockets_.get(id);
  OpMemory* m = s->memory.get();
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;
  sqe->opcode = IORING_OP_CONNECT;
  sqe->fd = s->fd;
  sqe->addr = reinterpret_cast<uint64_t>(&m->addr);
  sqe->off = m->addr_len;
  sqe->user_data = pack(kOpConnect, id, gen(id));
  s->connect_op = kOpConnect;
  ++s->inflight;
  kick();
}

// A POLL_ADD for `events` on the socket's fd; the caller records what it waits for.
bool IouringEngine::arm_poll(int id, Op op, unsigned events, bool multishot) {
  Socket* s = sockets_.get(id);
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return false;
  sqe->opcode = IORING_OP_POLL_ADD;
  sqe->fd = s->fd;
  sqe->poll32_events = events;
  sqe->len = multishot ? IORING_POLL_ADD_MULTI : 0;
  sqe->user_data = pack(op, id, gen(id));
  ++s->inflight;
  kick();
  return true;
}

void IouringEngine::arm_connect_poll(int id) {
  if (arm_poll(id, kOpConnectPoll, POLLOUT, false)) sockets_.get(id)->connect_op = kOpConnectPoll;
}

void IouringEngine::arm_accept_poll(int id) {
  if (!arm_poll(id, kOpAcceptPoll, POLLIN, false)) return;
  Socket* s = sockets_.get(id);
  s->arm = kArmed;
  s->accept_poll = true;
}

void IouringEngine::arm_datagram_in(int id) {
  if (arm_poll(id, kOpDatagramIn, POLLIN, multishot_poll_)) sockets_.get(id)->arm = kArmed;
}

// One-shot, re-armed after each read: arming checks the socket's state, so bytes a read left
// behind (or a FIN) fire it again at once, where a multishot poll reports only new arrivals and
// would wait for one that may never come.
void IouringEngine::arm_recv_poll(int id) {
  if (!arm_poll(id, kOpRecvPoll, POLLIN, false)) return;
  Socket* s = sockets_.get(id);
  s->arm = kArmed;
  s->recv_poll = true;
}

void IouringEngine::arm_datagram_out(int id) {
  if (arm_poll(id, kOpDatagramOut, POLLOUT, false)) sockets_.get(id)->out_poll = true;
}

// Cancels by user_data, not by fd: the fd may be closed (and its number reused) before the cancel
// reaches the kernel.
void IouringEngine::cancel(uint64_t target) {
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;
  sqe->opcode = IORING_OP_ASYNC_CANCEL;
  sqe->fd = -1;
  sqe->addr = target;
  if (cqe_skip_) sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
  sqe->user_data = (static_cast<uint64_t>(kOpCancel) << 56) | (target & ((1ull << 56) - 1));
  kick();
}

// Cancels the receive, accept or accept-poll armed on the socket.
void IouringEngine::cancel_arm(int id) {
  Socket* s = sockets_.get(id);
  if (s->arm != kArmed) return;
  Op op = s->datagram      ? kOpDatagramIn
          : !s->listener   ? (s->recv_poll ? kOpRecvPoll : kOpRecv)
          : s->accept_poll ? kOpAcceptPoll
                           : kOpAccept;
  cancel(pack(op, id, gen(id)));
  s->arm = kCancelling;
}

void IouringEngine::cancel_ops(int id) {
  Socket* s = sockets_.get(id);
  uint32_t g = gen(id);
  cancel_arm(id);
  if (s->send_inflight) cancel(pack(kOpSend, id, g));
  if (s->out_poll) cancel(pack(kOpDatagramOut, id, g));
  if (s->connecting && s->connect_op != kOpNone) cancel(pack(s->connect_op, id, g));
}

void IouringEngine::maybe_arm_recv(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->listener || s->datagram || !s->wants_input() || s->arm != kIdle) return;
  arm_recv(id);
}

void IouringEngine::maybe_arm_accept(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->listener || s->paused || s->arm != kIdle) return;
  arm_accept(id);
}

void IouringEngine::maybe_arm_datagram(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->datagram || s->paused || s->arm != kIdle) return;
  arm_datagram_in(id);
}

void IouringEngine::arm_deferred() {
  for (const Ref& r : deferred_) {
    Socket* s = live(r.id, r.gen);
    if (s == nullptr) continue;
    if (s->listener) {
      maybe_arm_accept(r.id);
    } else if (s->datagram) {
      maybe_arm_datagram(r.id);
    } else {
      maybe_arm_recv(r.id);
    }
  }
  deferred_.clear();
}

}  // namespace iouring
}  // namespace iomux

#endif  // __linux__
