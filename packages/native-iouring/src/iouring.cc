// Linux io_uring backend: setup, teardown, the eventfd, poll and the completion dispatch. The
// design is described in iouring_engine.h.
#ifdef __linux__

#include "iouring_engine.h"

namespace iomux {
namespace iouring {

int IouringEngine::init() {
  tuning_ = Tuning::from_config(config_);
  fault_after_ = config_.tune("faultKernelAfter", -1);
  fault_errno_ = static_cast<int>(config_.tune("faultKernelErrno", EIO));
  if (fault_errno_ <= 0) fault_errno_ = EIO;
  creator_ = Credentials::current();
  fault_hand_off_ = config_.tune("faultHandOverTimeout", 0) == 1;
  int rc = open_ring(tuning_.first_setup);
  if (rc < 0) return rc;
  if (tuning_.check_deferred_wakeup && (ring_.flags() & IORING_SETUP_DEFER_TASKRUN) != 0) {
    rc = deferred_work_signals();
    if (rc < 0) return rc;
    // The glue sleeps on the eventfd: where deferred completions do not signal it, each one would
    // wait for an unrelated wake-up of the loop (measured on a 6.18 kernel: every completion about
    // 16 ms late, 63 echo round trips/s instead of ~50 k). Task work that the kernel runs at our
    // next syscall (COOP_TASKRUN) signals it as it is posted.
    if (rc == 0) {
      ring_.close();
      notifier_.close();
      rc = open_ring(kFirstCoopSetup);
      if (rc < 0) return rc;
    }
  }
  rc = bufs_.init(ring_, kBufGroup, tuning_.buf_count, tuning_.buf_size);
  if (rc < 0) return rc;
  (void)reserve_.open();  // without it the engine runs on, only without shedding
  return 0;
}

int IouringEngine::open_ring(size_t first) {
  int rc = ring_.init(tuning_.sq_entries, tuning_.cq_entries, first);
  if (rc < 0) return rc;
  rc = uring::check_capabilities(ring_, nullptr);
  if (rc < 0) return rc;
  cqe_skip_ = (ring_.features() & IORING_FEAT_CQE_SKIP) != 0;
  multishot_accept_ = tuning_.multishot;
  multishot_recv_ = tuning_.multishot;
  multishot_poll_ = tuning_.multishot;
#if defined(__x86_64__) || defined(__i386__)
  // Silencing the eventfd while we reap is race-free only where every completion is posted by our
  // own thread (DEFER_TASKRUN) and the kernel's "work queued" flag is a full barrier (x86's locked
  // RMW); elsewhere the eventfd simply fires once more after a poll.
  unsigned need = IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  toggle_ = tuning_.eventfd_toggle && (ring_.flags() & need) == need;
#endif
  rc = notifier_.open();
  if (rc < 0) return rc;
  int event_fd = notifier_.fd();  // an eventfd on Linux, as IORING_REGISTER_EVENTFD needs
  rc = ring_.register_op(IORING_REGISTER_EVENTFD, &event_fd, 1);
  if (rc < 0) return rc;
  return 0;
}

int IouringEngine::deferred_work_signals() {
  // A POLL_ADD on a pipe, then a byte written to it: the wake-up queues the completion as task
  // work in our own write(), so a kernel that signals for deferred work has done so on return.
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
  int result = -EBUSY;
  io_uring_sqe* sqe = ring_.get_sqe();
  if (sqe != nullptr) {
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = pipe_fds[0];
    sqe->poll32_events = POLLIN;
    result = ring_.submit(false);
  }
  if (result >= 0) result = notifier_.drain();
  if (result >= 0) {
    uint8_t byte = 1;
    result = ::write(pipe_fds[1], &byte, 1) == 1 ? 0 : -errno;
  }
  if (result >= 0) {
    pollfd wake{notifier_.fd(), POLLIN, 0};
    int ready = ::poll(&wake, 1, 0);
    result = ready < 0 ? -errno : ready;
    // Runs the task work and takes its completion, so the engine starts with an empty ring.
    int reaped = ring_.submit_and_wait(1, 1000 * 1000 * 1000LL);
    if (reaped < 0) result = reaped;
    ring_.cq_release(ring_.cq_head() + ring_.cq_ready());
    int drained = notifier_.drain();
    if (drained < 0 && result >= 0) result = drained;
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  return result;
}

IouringEngine::~IouringEngine() {
  // Closing the ring fd starts an asynchronous teardown in the kernel: an operation still in flight
  // could write into a receive buffer (or read a queued send) after we unmapped or freed it. So
  // everything is cancelled and its last completion collected first; only when that is proven is
  // the memory given back. Otherwise (a dead or wedged ring) it stays mapped and allocated: a
  // bounded leak on a failure path instead of a write into reused memory.
  // A ring fd closed by other code (ring_.fd() < 0) is never entered again.
  bool quiet = ring_.fd() >= 0 && settle(true);
  ring_.close();
  if (quiet) {
    bufs_.release();
  } else {
    bufs_.abandon();
  }
  for (int id = 0; id < sockets_.capacity(); ++id) {
    Socket* s = sockets_.get(id);
    if (s == nullptr) continue;
    close_fd(s->fd);
    for (int fd : s->accepted) close_fd(fd);
    if (!quiet && s->inflight > 0) leak_for_kernel(&s->memory, &s->queue);
  }
  if (!quiet) {
    for (auto& entry : zombies_) leak_for_kernel(&entry.second.memory, &entry.second.queue);
  }
  zombies_.clear();
  notifier_.close();  // after the ring; an eventfd lost to other code was abandoned instead
}

// rc: what notifier_.signal() or drain() returned. Once other code closed the eventfd its number
// may name another file at any moment: the Notifier is abandoned (never read, written or closed
// again; it answers -EBADF from here on without a syscall) and the engine is broken with EBADF.
bool IouringEngine::notifier_lost(int rc) {
  if (!Notifier::closed_elsewhere(rc)) return false;
  notifier_.abandon();
  if (broken_ == 0) broken_ = -EBADF;
  return true;
}

// Gives a fresh slot a generation that differs from every earlier tenant's (whose completions may
// still be on their way); returns the id.
int IouringEngine::next_generation(int id) {
  auto slot = static_cast<size_t>(id);
  if (gens_.size() <= slot) gens_.resize(slot + 1, 0);
  gens_[slot] = (gens_[slot] + 1) & kGenMask;
  return id;
}

int IouringEngine::add_socket(int fd, bool listener, bool connecting) {
  int id = sockets_.alloc_owning(fd);
  if (id < 0) return id;
  next_generation(id);
  Socket* s = sockets_.get(id);
  s->listener = listener;
  s->connecting = connecting;
  return id;
}

// ---------------------------------------------------------------------------------------------
// Credentials (CVE-2024-22017)
//
// A ring keeps the credentials of the task that created it: its io-wq workers were forked with
// them, so an operation they run after the process dropped privileges (setuid, setgid) runs with
// the old ones. The ids are compared before every poll's submissions; a change breaks the engine
// with EPERM, which the reactor answers with a runtime fallback (its sockets move to the next
// backend, which has no such state) or, without one, with IOMUX_BACKEND_FAILED. A submission
// forced by a full SQ between the change and the next poll still goes out with the old workers.

IouringEngine::Credentials IouringEngine::Credentials::current() {
  Credentials c;
  // Cannot fail with valid pointers; if it did, the zeros compare unequal to a later reading.
  (void)getresuid(&c.uid[0], &c.uid[1], &c.uid[2]);
  (void)getresgid(&c.gid[0], &c.gid[1], &c.gid[2]);
  return c;
}

bool IouringEngine::Credentials::operator==(const Credentials& other) const {
  for (int i = 0; i < 3; ++i) {
    if (uid[i] != other.uid[i] || gid[i] != other.gid[i]) return false;
  }
  return true;
}

bool IouringEngine::credentials_changed() { return !(Credentials::current() == creator_); }

// ---------------------------------------------------------------------------------------------
// Poll

bool IouringEngine::work_left() {
  return !ready_.empty() || backlog_head_ != backlog_.size() || ring_.cq_ready() != 0 ||
         ring_.sq_pending() != 0 ||
         (ring_.sq_flags() & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}

int IouringEngine::poll(EventSink* sink) {
  sockets_.recycle();
  ++counters_.polls;
  if (broken_ != 0) return broken_;
  if (credentials_changed()) {
    // Nothing was taken from the kernel yet: report at once; inbox bytes travel with detach.
    broken_ = -EPERM;
    return broken_;
  }
  in_poll_ = true;
  kicked_ = false;
  if (toggle_) ring_.set_eventfd_enabled(false);
  // Cleared before anything is reaped, so a completion that lands from here on signals it anew
  // (or, with the toggle, is caught by work_left() below).
  if (notifier_lost(notifier_.drain())) {
    // Nothing was taken from the kernel yet: report at once; inbox bytes travel with detach.
    in_poll_ = false;
    if (toggle_) ring_.set_eventfd_enabled(true);
    return broken_;
  }

  deliver_ready(sink);
  int rc = 0;
  for (int round = 0; round < kMaxRounds && !sink->full() && broken_ == 0; ++round) {
    rc = enter_in_poll(true);
    if (rc < 0) break;
    size_t handled = reap(sink);
    bufs_.publish();
    bool pending = ring_.sq_pending() != 0 || ring_.cq_ready() != 0;
    bool kernel_work = (ring_.sq_flags() & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
    // Nothing reaped and nothing to submit: the kernel reports work it did not turn into
    // completions this round; work_left() hands it to the next poll instead of spinning here.
    if (!pending && (!kernel_work || handled == 0)) break;
  }
  if (rc >= 0 && broken_ == 0) {
    bufs_.publish();
    arm_deferred();
    // Always through enter_in_poll (without a syscall when nothing is pending), so an injected
    // failure can land after completions were reaped: the path that must keep the batch.
    rc = enter_in_poll(false);
  }
  in_poll_ = false;
  if (toggle_) ring_.set_eventfd_enabled(true);  // with a full barrier before work_left() reads
  if (rc < 0) broken_ = rc;
  counters_.events += static_cast<uint64_t>(sink->count);
  if (broken_ != 0) {
    // The ring failed after this batch took bytes, accepts and closes from the kernel: deliver
    // them; the failure follows through broken() and the next poll (engine.h).
    if (sink->count > 0) return sink->count;
    return broken_;
  }
  if (work_left()) (void)notifier_lost(notifier_.signal());
  return sink->count;
}

// One io_uring_enter from poll(), or the injected failure.
int IouringEngine::enter_in_poll(bool get_events) {
  if (fault_after_ == 0) return -fault_errno_;
  int rc = ring_.submit(get_events);
  if (rc >= 0 && fault_after_ > 0) --fault_after_;
  return rc;
}

// One completion at a time, each taken off the backlog or the ring before it is handled: a
// handler may itself stash the CQ (get_sqe) or submit (both read our head, and submitting
// publishes it first).
size_t IouringEngine::reap(EventSink* sink) {
  size_t handled = 0;
  while (!sink->full()) {
    Completion cqe;
    if (backlog_head_ != backlog_.size()) {
      cqe = backlog_[backlog_head_++];  // older than anything in the ring
      if (backlog_head_ == backlog_.size()) {
        backlog_.clear();
        backlog_head_ = 0;
      }
    } else {
      if (ring_.cq_ready() == 0) break;
      unsigned head = ring_.cq_head();
      const io_uring_cqe* c = ring_.cqe_at(head);
      cqe = Completion{c->user_data, c->res, c->flags};
      ring_.cq_consume(head + 1);  // the kernel sees the new head once, after the loop
    }
    handle(cqe, sink);
    ++handled;
  }
  ring_.cq_publish();
  return handled;
}

// Empties the CQ into the backlog, so completions the kernel holds in its overflow list can be
// flushed into the ring.
void IouringEngine::stash_cq() {
  unsigned head = ring_.cq_head();
  unsigned end = head + ring_.cq_ready();
  for (; head != end; ++head) {
    const io_uring_cqe* c = ring_.cqe_at(head);
    if (op_of(c->user_data) != kOpNone)
      backlog_.push_back(Completion{c->user_data, c->res, c->flags});
  }
  ring_.cq_release(head);
}

// Decodes a completion's op, socket id and finality. Returns its live socket, with this operation
// counted out when it was the last completion; nullptr for a completion with no socket to act on
// (ours without a socket, a cancel's own, or a stale one, which stale() has cleaned up after).
IouringEngine::Socket* IouringEngine::claim(const Completion& cqe, Op* op, int* id, bool* final) {
  *op = op_of(cqe.user_data);
  if (*op == kOpNone || *op == kOpCancel) return nullptr;
  *id = id_of(cqe.user_data);
  uint32_t g = gen_of(cqe.user_data);
  *final = (cqe.flags & IORING_CQE_F_MORE) == 0;
  Socket* s = live(*id, g);
  if (s == nullptr) {
    stale(cqe, *op, *id, g, *final);
    return nullptr;
  }
  if (*final) --s->inflight;
  return s;
}

void IouringEngine::handle(const Completion& cqe, EventSink* sink) {
  Op op;
  int id;
  bool final;
  Socket* s = claim(cqe, &op, &id, &final);
  if (s == nullptr) return;
  switch (op) {
    case kOpAccept:
      on_accept(id, cqe.res, final, sink);
      break;
    case kOpAcceptPoll:
      s->arm = kIdle;  // a connection is pending (or the wait was cancelled): accept again
      s->accept_poll = false;
      maybe_arm_accept(id);
      break;
    case kOpRecv:
      on_recv(id, cqe, final, sink);
      break;
    case kOpSend:
      on_send(id, cqe.res, sink);
      break;
    case kOpConnect:
    case kOpConnectPoll:
      on_connect(id, op, cqe.res, sink);
      break;
    case kOpDatagramIn:
      on_datagram_in(id, cqe.res, final, sink);
      break;
    case kOpDatagramOut:
      on_datagram_out(id, sink);
      break;
    case kOpRecvPoll:
      on_recv_poll(id, cqe.res, final, sink);
      break;
    default:
      break;
  }
}

// A completion for a socket that is gone: give back what it holds, close what it opened.
void IouringEngine::stale(const Completion& cqe, Op op, int id, uint32_t g, bool final) {
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
    if (bufs_.valid(bid)) bufs_.recycle(bid);
  }
  if (op == kOpAccept && cqe.res >= 0) close_fd(cqe.res);
  if (!final) return;
  auto it = zombies_.find(zombie_key(id, g));
  if (it != zombies_.end() && --it->second.inflight <= 0) zombies_.erase(it);
}

}  // namespace iouring

namespace backend {

const char* const kName = "io_uring";

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  auto engine = std::make_unique<iouring::IouringEngine>(config);
  int rc = engine->init();
  if (rc < 0) {
    *error = rc;
    return nullptr;
  }
  return engine;
}

}  // namespace backend

}  // namespace iomux

#else  // !__linux__

// io_uring exists only on Linux: elsewhere the addon still builds and says why it cannot run
// (backend::probe, in iouring_probe.cc).
#include <cerrno>
#include <memory>

#include "iomux/engine.h"

namespace iomux {
namespace backend {

const char* const kName = "io_uring";

std::unique_ptr<Engine> create(const EngineConfig& /*config*/, int* error) {
  *error = -ENOSYS;
  return nullptr;
}

}  // namespace backend
}  // namespace iomux

#endif  // __linux__
