// Linux io_uring backend: a completion engine with the socket-level semantics of readiness.cc.
//
// Reads: one multishot IORING_OP_RECV per connection selects buffers from a provided-buffer ring;
// each completion is copied into the batch slab and its buffer goes straight back to the ring.
// Bytes that do not fit (slab full, socket paused) wait in the socket's inbox, in order, and go
// out first in a later poll. Accepts: one multishot IORING_OP_ACCEPT per listener. Writes: a
// synchronous send() first; what the kernel did not take is queued and flushed by one in-flight
// IORING_OP_SENDMSG per connection. Connects: IORING_OP_CONNECT.
//
// UDP: a multishot IORING_OP_POLL_ADD (POLLIN) per datagram socket; each readiness completion is
// drained with recvmmsg straight into the slab (many datagrams per syscall, where a receive op
// would post one completion per datagram). The poll reports wake-ups, not levels, so a socket the
// batch had no room for stays in ready_ and is drained first in the next poll. Sends go out at
// once; what the kernel has no room for waits in the bounded outbox, flushed with sendmmsg when a
// one-shot POLLOUT poll completes.
//
// user_data = op (8 bits) | slot generation (24 bits) | id (32 bits): a completion for an id that
// was released (and maybe reused) is recognised by its generation and only cleaned up after.
// A socket closed with operations in flight leaves a zombie holding the memory those operations
// may still touch (queued bytes, msghdr) until their last completion arrives.
//
// The glue watches an eventfd registered with the ring. poll() clears it first, then submits and
// reaps; before returning it re-signals the eventfd when anything is left (CQEs it had no room
// for, undelivered inbox bytes, deferred task work), so nothing waits for a wake-up that already
// happened.
#ifdef __linux__

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "conn_table.h"
#include "datagram.h"
#include "iomux/engine.h"
#include "iouring_probe.h"
#include "socket_util.h"
#include "uring.h"
#include "write_queue.h"

namespace iomux {

namespace {

using uring::BufferRing;
using uring::Ring;

constexpr unsigned kSqEntries = 4096;
constexpr unsigned kCqEntries = 16384;
// 16 MiB of receive buffers: 8 KiB keeps bulk transfers at few completions per MiB, 2048 of them
// leave room for a completion per connection per poll at a thousand busy connections.
constexpr unsigned kBufCount = 2048;
constexpr unsigned kBufSize = 8192;
constexpr uint16_t kBufGroup = 0;
constexpr int kMaxIov = 32;                // iovecs per queued SENDMSG
constexpr int kMaxSyncIov = 1024;          // iovecs per synchronous send (IOV_MAX)
constexpr int kMaxRounds = 4;              // submit+reap rounds per poll
constexpr size_t kInboxKeep = 256 * 1024;  // inbox capacity kept after it drains
constexpr uint32_t kGenMask = 0xFFFFFF;
// How long a runtime migration (all its detach calls together) or the engine's teardown may wait
// for the kernel to give back cancelled operations. Cancels of socket operations complete within
// one io_uring_enter in practice; the bound only keeps a wedged ring from freezing Node's thread.
constexpr long long kSettleBudgetNs = 250000000LL;

enum Op : uint8_t {
  kOpNone = 0,  // a neutralised CQE (see detach): skipped
  kOpAccept = 1,
  kOpRecv = 2,
  kOpSend = 3,
  kOpConnect = 4,
  kOpConnectPoll = 5,  // POLLOUT wait when IORING_OP_CONNECT reports EINPROGRESS (adopted sockets)
  kOpCancel = 6,
  kOpAcceptPoll = 7,    // POLLIN wait on a listener after EMFILE/ENFILE (see on_accept)
  kOpVoid = 8,          // an operation withdrawn (made a NOP) before the kernel read it
  kOpDatagramIn = 9,    // multishot POLLIN on a UDP socket
  kOpDatagramOut = 10,  // one-shot POLLOUT on a UDP socket whose outbox holds datagrams
};

// State of the one receive (or accept, for a listener) a socket may have armed.
enum ArmState : uint8_t { kIdle = 0, kArmed = 1, kCancelling = 2 };

inline uint64_t pack(Op op, int id, uint32_t gen) {
  return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) |
         static_cast<uint32_t>(id);
}
inline Op op_of(uint64_t ud) { return static_cast<Op>(ud >> 56); }
inline int id_of(uint64_t ud) { return static_cast<int>(ud & 0xFFFFFFFFu); }
inline uint32_t gen_of(uint64_t ud) { return static_cast<uint32_t>(ud >> 32) & kGenMask; }
inline uint64_t retag(uint64_t ud, Op op) {
  return (ud & ((1ull << 56) - 1)) | (static_cast<uint64_t>(op) << 56);
}
inline uint64_t zombie_key(int id, uint32_t gen) {
  return (static_cast<uint64_t>(gen) << 32) | static_cast<uint32_t>(id);
}

long long now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// A CQE as we keep it: copied out of the ring when it has to wait (see IouringEngine::stash_cq).
struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
};

// Memory the kernel reads for a queued send or a connect; it outlives the socket if need be.
struct OpMemory {
  msghdr msg;
  iovec iov[kMaxIov];
  sockaddr_storage addr;
  socklen_t addr_len;
};

// Memory an operation the kernel never gave back may still read: deliberately never freed.
void leak_for_kernel(std::unique_ptr<OpMemory>* memory, WriteQueue* queue) {
  (void)memory->release();
  (void)new WriteQueue(std::move(*queue));
}

// Tuning and test switches, from EngineConfig::tuning (parsed and range-checked in TypeScript,
// packages/core/src/tuning.ts). The clamps here only keep a caller that bypasses TypeScript from
// handing the kernel nonsense: an out-of-range value takes the default.
struct Tuning {
  bool multishot = true;
  bool eventfd_toggle = true;
  size_t first_setup = 0;
  unsigned buf_count = kBufCount;
  unsigned buf_size = kBufSize;
  unsigned sq_entries = kSqEntries;
  unsigned cq_entries = kCqEntries;

  static unsigned knob(const EngineConfig& config, const char* name, unsigned fallback, unsigned lo,
                       unsigned hi) {
    int64_t v = config.tune(name, fallback);
    if (v < static_cast<int64_t>(lo) || v > static_cast<int64_t>(hi)) return fallback;
    return static_cast<unsigned>(v);
  }

  static Tuning from_config(const EngineConfig& config) {
    Tuning t;
    t.multishot = config.tune("iouringSingleshot", 0) != 1;
    t.eventfd_toggle = config.tune("iouringNoEventfdToggle", 0) != 1;
    // iouringSetup: 0 default (best first), 1 coop (skip DEFER_TASKRUN), 2 basic (no task-run
    // flags), 3 none (no setup flags at all): indices into uring::setup_choices().
    switch (config.tune("iouringSetup", 0)) {
      case 1:
        t.first_setup = 2;
        break;
      case 2:
        t.first_setup = 3;
        break;
      case 3:
        t.first_setup = uring::setup_choices().size() - 1;
        break;
      default:
        t.first_setup = 0;
        break;
    }
    t.buf_size = knob(config, "iouringBufSize", kBufSize, 1024, 1u << 20);
    if (t.buf_size > config.read_chunk) t.buf_size = static_cast<unsigned>(config.read_chunk);
    t.buf_count = knob(config, "iouringBufCount", kBufCount, 64, 32768);
    if ((t.buf_count & (t.buf_count - 1)) != 0) t.buf_count = kBufCount;
    // Small rings exercise the SQ-full and CQ-overflow paths in tests.
    t.sq_entries = knob(config, "iouringSqEntries", kSqEntries, 2, 32768);
    t.cq_entries = knob(config, "iouringCqEntries", kCqEntries, 4, 65536);
    if (t.cq_entries < t.sq_entries) t.cq_entries = t.sq_entries;
    return t;
  }
};

class IouringEngine final : public Engine {
 public:
  explicit IouringEngine(const EngineConfig& config) : config_(config) {}
  ~IouringEngine() override;

  int init();

  int wait_fd() const override { return event_fd_; }
  int poll(EventSink* sink) override;
  int broken() const override { return broken_; }
  int listen(const ListenRequest& request) override;
  int connect(const sockaddr_storage& addr, socklen_t addr_len) override;
  int64_t write(int id, const iovec* bufs, int count) override;
  int set_reading(int id, bool reading) override;
  int shutdown(int id, ShutdownResult* result) override;
  int destroy(int id) override;
  int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) override;
  const Counters& counters() const override { return counters_; }
  int detach(int id, DetachedSocket* out) override;
  int adopt(DetachedSocket&& socket) override;
  int udp_open(const UdpRequest& request) override;
  int udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                     DatagramBatchResult* result) override;
  int socket_fd(int id) override;

 private:
  struct Socket : SocketFlags {
    bool in_use = false;
    bool eof_pending = false;  // EOF received; END goes out after the inbox
    bool send_inflight = false;
    bool in_ready = false;     // listed in ready_
    bool accept_poll = false;  // a listener's armed operation is the POLLIN wait, not the accept
    bool datagram = false;     // a UDP socket: `arm` is its POLLIN poll
    bool readable = false;     // UDP: the poll reported data that recvmmsg has not drained yet
    bool out_poll = false;     // UDP: the POLLOUT poll for the outbox is armed
    uint8_t arm = kIdle;       // the receive (or, for a listener, the accept)
    Op connect_op = kOpNone;
    int err_pending = 0;  // receive error; CLOSE goes out after the inbox
    int fd = -1;
    int inflight = 0;  // operations whose last CQE has not arrived
    size_t inbox_head = 0;
    std::vector<uint8_t> inbox;  // received, not yet delivered
    WriteQueue queue;
    std::unique_ptr<OpMemory> memory;
    size_t max_datagram = 0;
    DatagramOutbox outbox;  // UDP; only synchronous sendmmsg reads it, so no zombie keeps it
  };

  struct Zombie {
    int inflight = 0;
    std::unique_ptr<OpMemory> memory;
    WriteQueue queue;
  };

  struct Ref {
    int id;
    uint32_t gen;
  };

  Socket* live(int id, uint32_t gen) {
    Socket* s = sockets_.get(id);
    if (s == nullptr || gens_[static_cast<size_t>(id)] != gen) return nullptr;
    return s;
  }
  uint32_t gen(int id) const { return gens_[static_cast<size_t>(id)]; }
  static bool inbox_empty(const Socket* s) { return s->inbox_head == s->inbox.size(); }

  int new_id();
  int add_socket(int fd, bool listener, bool connecting);
  io_uring_sqe* get_sqe();
  void arm_recv(int id);
  void arm_accept(int id);
  void arm_send(int id, bool poll_first);
  void arm_connect(int id);
  bool arm_poll(int id, Op op, unsigned events, bool multishot);
  void arm_connect_poll(int id);
  void arm_accept_poll(int id);
  void arm_datagram_in(int id);
  void arm_datagram_out(int id);
  void cancel(uint64_t target);
  void cancel_arm(int id);
  void cancel_ops(int id);
  void maybe_arm_recv(int id);
  void maybe_arm_accept(int id);
  void maybe_arm_datagram(int id);
  void defer_arm(int id) { deferred_.push_back(Ref{id, gen(id)}); }
  void arm_deferred();

  int enter_in_poll(bool get_events);
  void reap(EventSink* sink);
  void stash_cq();
  void handle(const Completion& cqe, EventSink* sink);
  void stale(const Completion& cqe, Op op, int id, uint32_t gen, bool final);
  void on_accept(int id, int res, bool final, EventSink* sink);
  void on_recv(int id, const Completion& cqe, bool final, EventSink* sink);
  void on_send(int id, int res, EventSink* sink);
  void on_connect(int id, Op op, int res, EventSink* sink);
  void on_datagram_in(int id, int res, bool final, EventSink* sink);
  void on_datagram_out(int id, EventSink* sink);
  // One recvmmsg into the batch; true when datagrams may be left (the socket must stay in ready_).
  bool drain_datagrams(Socket* s, int id, EventSink* sink);

  void take_data(int id, const uint8_t* data, size_t len, EventSink* sink);
  void deliver_inbox(Socket* s, int id, EventSink* sink);
  void deliver_ready(EventSink* sink);
  void deliver_end(int id, EventSink* sink);
  void add_ready(int id);
  void after_send(int id, bool poll_first, EventSink* sink);
  void flush_now(int id, EventSink* sink);
  bool finish_shutdown(int id);
  void close_socket(int id);
  void fail(int id, int err, EventSink* sink);
  bool shed_connection(int listen_fd);

  // Runtime fallback and teardown: cancel everything, collect completions into socket state.
  bool settle(bool include_zombies);
  void cancel_everything();
  void absorb(const Completion& cqe);
  bool ops_in_flight(bool include_zombies);

  void signal_eventfd();
  int drain_eventfd();
  void lose_eventfd();
  void kick() {
    if (in_poll_ || kicked_) return;
    kicked_ = true;
    signal_eventfd();
  }
  bool work_left();

  static void push_data(EventSink* sink, int id, size_t offset, size_t len);

  EngineConfig config_;
  Tuning tuning_;
  Ring ring_;
  BufferRing bufs_;
  ConnTable<Socket> sockets_;
  std::vector<uint32_t> gens_;
  std::unordered_map<uint64_t, Zombie> zombies_;
  std::vector<Ref> ready_;     // sockets with inbox bytes, END or CLOSE to deliver
  std::vector<Ref> deferred_;  // receives/accepts to re-arm at the end of this poll
  // CQEs moved out of the ring by detach(), older than anything still in it: reaped first.
  std::vector<Completion> backlog_;
  size_t backlog_head_ = 0;
  Counters counters_;
  int event_fd_ = -1;
  bool event_fd_lost_ = false;  // closed by other code (see lose_eventfd)
  int reserve_fd_ = -1;
  int broken_ = 0;  // -errno once the ring itself failed
  // Fault injection (tuning faultKernelAfter / faultKernelErrno): after this many successful
  // io_uring_enter calls inside poll(), the next one fails with fault_errno_. -1: off.
  int64_t fault_after_ = -1;
  int fault_errno_ = EIO;
  bool in_poll_ = false;
  bool migrating_ = false;  // detach() settled every socket's operations once (see settle)
  // The ring could not be entered while settling: what is still in flight cannot progress (with
  // DEFER_TASKRUN) but is never given back either.
  bool ring_dead_ = false;
  bool kicked_ = false;
  bool toggle_ = false;  // IORING_CQ_EVENTFD_DISABLED while inside poll()
  bool cqe_skip_ = false;
  bool multishot_accept_ = true;
  bool multishot_recv_ = true;
  bool multishot_poll_ = true;
  bool accept_multishot_seen_ = false;
  bool recv_multishot_seen_ = false;
};

int IouringEngine::init() {
  tuning_ = Tuning::from_config(config_);
  fault_after_ = config_.tune("faultKernelAfter", -1);
  fault_errno_ = static_cast<int>(config_.tune("faultKernelErrno", EIO));
  if (fault_errno_ <= 0) fault_errno_ = EIO;
  int rc = ring_.init(tuning_.sq_entries, tuning_.cq_entries, tuning_.first_setup);
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
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) return -errno;
  rc = ring_.register_op(IORING_REGISTER_EVENTFD, &event_fd_, 1);
  if (rc < 0) return rc;
  rc = bufs_.init(ring_, kBufGroup, tuning_.buf_count, tuning_.buf_size);
  if (rc < 0) return rc;
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return 0;
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
    if (!quiet && s->inflight > 0) leak_for_kernel(&s->memory, &s->queue);
  }
  if (!quiet) {
    for (auto& entry : zombies_) leak_for_kernel(&entry.second.memory, &entry.second.queue);
  }
  zombies_.clear();
  if (event_fd_ >= 0 && !event_fd_lost_) close_fd(event_fd_);
  if (reserve_fd_ >= 0) close_fd(reserve_fd_);
}

void IouringEngine::signal_eventfd() {
  if (event_fd_lost_) return;
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(event_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EBADF || errno == EINVAL)) lose_eventfd();
}

// 0, or -EBADF once the eventfd was closed by other code (EINVAL or end-of-file: its number now
// names another file).
int IouringEngine::drain_eventfd() {
  if (event_fd_lost_) return -EBADF;
  uint64_t value;
  ssize_t n;
  do {
    n = ::read(event_fd_, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  // An eventfd read gives 8 bytes or EAGAIN, never end-of-file: 0 means the number was reused.
  if (n == 0 || (n < 0 && (errno == EBADF || errno == EINVAL))) {
    lose_eventfd();
    return -EBADF;
  }
  return 0;
}

// The number may be reused by other code at any moment: never read, written or closed again.
void IouringEngine::lose_eventfd() {
  event_fd_lost_ = true;
  if (broken_ == 0) broken_ = -EBADF;
}

// A fresh slot whose generation differs from every earlier tenant's (whose completions may still
// be on their way).
int IouringEngine::new_id() {
  int id = sockets_.alloc();
  if (id < 0) return id;
  auto slot = static_cast<size_t>(id);
  if (gens_.size() <= slot) gens_.resize(slot + 1, 0);
  gens_[slot] = (gens_[slot] + 1) & kGenMask;
  return id;
}

int IouringEngine::add_socket(int fd, bool listener, bool connecting) {
  int id = new_id();
  if (id < 0) {
    close_fd(fd);
    return id;
  }
  Socket* s = sockets_.get(id);
  s->fd = fd;
  s->listener = listener;
  s->connecting = connecting;
  return id;
}

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
    signal_eventfd();  // the next poll reports the failure
  }
  return sqe;
}

void IouringEngine::arm_recv(int id) {
  Socket* s = sockets_.get(id);
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
          : !s->listener   ? kOpRecv
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
  if (s == nullptr || s->listener || s->datagram || s->connecting || s->paused || s->read_eof ||
      s->eof_pending || s->err_pending != 0 || s->arm != kIdle) {
    return;
  }
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
  in_poll_ = true;
  kicked_ = false;
  if (toggle_) ring_.set_eventfd_enabled(false);
  // Cleared before anything is reaped, so a completion that lands from here on signals it anew
  // (or, with the toggle, is caught by work_left() below).
  if (drain_eventfd() < 0) {
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
    reap(sink);
    bufs_.publish();
    if (ring_.sq_pending() == 0 && ring_.cq_ready() == 0 &&
        (ring_.sq_flags() & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) == 0) {
      break;
    }
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
  if (work_left()) signal_eventfd();
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
// handler may itself stash the CQ (get_sqe) or submit.
void IouringEngine::reap(EventSink* sink) {
  while (!sink->full()) {
    Completion cqe;
    if (backlog_head_ != backlog_.size()) {
      cqe = backlog_[backlog_head_++];  // older than anything in the ring
      if (backlog_head_ == backlog_.size()) {
        backlog_.clear();
        backlog_head_ = 0;
      }
    } else {
      if (ring_.cq_ready() == 0) return;
      unsigned head = ring_.cq_head();
      const io_uring_cqe* c = ring_.cqe_at(head);
      cqe = Completion{c->user_data, c->res, c->flags};
      ring_.cq_release(head + 1);
    }
    handle(cqe, sink);
  }
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

void IouringEngine::handle(const Completion& cqe, EventSink* sink) {
  Op op = op_of(cqe.user_data);
  if (op == kOpNone || op == kOpCancel) return;
  int id = id_of(cqe.user_data);
  uint32_t g = gen_of(cqe.user_data);
  bool final = (cqe.flags & IORING_CQE_F_MORE) == 0;
  Socket* s = live(id, g);
  if (s == nullptr) {
    stale(cqe, op, id, g, final);
    return;
  }
  if (final) --s->inflight;
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
        if (!out_of_fds || shed_connection(sockets_.get(id)->fd)) {
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

// Out of fds: accept the pending peer with the reserve fd and close it at once, so the kernel's
// backlog does not keep failing us. libuv does the same. True when a peer was pending (and shed),
// or when there is no reserve to tell.
bool IouringEngine::shed_connection(int listen_fd) {
  if (reserve_fd_ < 0) return true;
  close_fd(reserve_fd_);
  reserve_fd_ = -1;
  int fd = accept_connection(listen_fd);
  if (fd >= 0) close_fd(fd);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd >= 0 || (fd != -EAGAIN && fd != -EWOULDBLOCK);
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
    if (final) maybe_arm_recv(id);  // single-shot, or a multishot the kernel ended
    return;
  }
  if (res == 0) {
    s = sockets_.get(id);
    if (s->paused || !inbox_empty(s)) {
      s->eof_pending = true;
      if (!s->paused) add_ready(id);
      return;
    }
    deliver_end(id, sink);
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
  if (s->paused || !inbox_empty(s)) {
    s->err_pending = err;
    if (!s->paused) add_ready(id);
    return;
  }
  fail(id, err, sink);
}

void IouringEngine::push_data(EventSink* sink, int id, size_t offset, size_t len) {
  if (sink->count > 0) {
    int32_t* last = sink->events + static_cast<ptrdiff_t>(sink->count - 1) * kEventInts;
    if (last[0] == kEventData && last[1] == id &&
        static_cast<size_t>(last[2]) + static_cast<size_t>(last[3]) == offset &&
        static_cast<size_t>(last[3]) + len <= 0x7FFFFFFF) {
      last[3] += static_cast<int32_t>(len);  // contiguous with the previous chunk: one event
      return;
    }
  }
  sink->push(kEventData, id, static_cast<int32_t>(offset), static_cast<int32_t>(len));
}

void IouringEngine::take_data(int id, const uint8_t* data, size_t len, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (!s->paused && inbox_empty(s)) {
    size_t room = sink->slab_capacity - sink->slab_used;
    size_t n = len < room ? len : room;
    if (n > 0) {
      std::memcpy(sink->slab + sink->slab_used, data, n);
      push_data(sink, id, sink->slab_used, n);
      sink->slab_used += n;
    }
    if (n == len) return;
    data += n;
    len -= n;
    sink->slab_exhausted = true;  // this batch is full; the rest waits in the inbox
  }
  if (inbox_empty(s)) {
    s->inbox.clear();
    s->inbox_head = 0;
  }
  s->inbox.insert(s->inbox.end(), data, data + len);
  if (!s->paused) add_ready(id);
}

void IouringEngine::add_ready(int id) {
  Socket* s = sockets_.get(id);
  if (!s->in_ready) {
    s->in_ready = true;
    ready_.push_back(Ref{id, gen(id)});
  }
  kick();
}

void IouringEngine::deliver_inbox(Socket* s, int id, EventSink* sink) {
  size_t avail = s->inbox.size() - s->inbox_head;
  size_t room = sink->slab_capacity - sink->slab_used;
  size_t n = avail < room ? avail : room;
  if (n > 0) {
    std::memcpy(sink->slab + sink->slab_used, s->inbox.data() + s->inbox_head, n);
    push_data(sink, id, sink->slab_used, n);
    sink->slab_used += n;
    s->inbox_head += n;
  }
  if (inbox_empty(s)) {
    s->inbox.clear();
    s->inbox_head = 0;
    if (s->inbox.capacity() > kInboxKeep) std::vector<uint8_t>().swap(s->inbox);
  } else {
    sink->slab_exhausted = true;
  }
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
    deliver_inbox(s, r.id, sink);
    if (!inbox_empty(s)) {
      ready_[keep++] = r;
      continue;
    }
    s->in_ready = false;
    if (s->eof_pending) {
      deliver_end(r.id, sink);
    } else if (s->err_pending != 0) {
      fail(r.id, s->err_pending, sink);
    }
  }
  ready_.resize(keep);
}

void IouringEngine::deliver_end(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  s->eof_pending = false;
  s->read_eof = true;
  sink->push(kEventEnd, id);
  if (s->write_shut) {
    close_socket(id);
    sink->push(kEventClose, id, 0);
  }
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
  counters_.bytes_written += static_cast<uint64_t>(res);
  s->queue.consume(static_cast<size_t>(res));
  after_send(id, false, sink);
}

// The queue moved: send more, or report DRAIN and apply a pending shutdown once it is empty.
void IouringEngine::after_send(int id, bool poll_first, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (!s->queue.empty()) {
    arm_send(id, poll_first);
    return;
  }
  if (s->drain_pending) {
    s->drain_pending = false;
    sink->push(kEventDrain, id);
  }
  if (s->shutdown_requested && finish_shutdown(id)) sink->push(kEventClose, id, 0);
}

// Sends queued bytes synchronously (after connect), then goes on as after a send completion.
void IouringEngine::flush_now(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  iovec iov[kMaxIov];
  bool full = false;
  while (!s->queue.empty()) {
    int count = s->queue.gather(iov, kMaxIov);
    ssize_t n = send_vectored(s->fd, iov, count);
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      full = true;
      break;
    }
    if (n < 0) {
      fail(id, static_cast<int>(-n), sink);
      return;
    }
    counters_.bytes_written += static_cast<uint64_t>(n);
    s->queue.consume(static_cast<size_t>(n));
  }
  after_send(id, full, sink);
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
  s->connecting = false;
  s->memory.reset();
  sink->push(kEventConnect, id, 0);
  maybe_arm_recv(id);
  s = sockets_.get(id);
  if (!s->queue.empty()) {
    flush_now(id, sink);
  } else if (s->shutdown_requested && finish_shutdown(id)) {
    sink->push(kEventClose, id, 0);
  }
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

bool IouringEngine::finish_shutdown(int id) {
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

void IouringEngine::close_socket(int id) {
  Socket* s = sockets_.get(id);
  uint32_t g = gen(id);
  cancel_ops(id);
  // An SQE naming this fd that the kernel has not read yet would reach whatever socket gets the
  // number next: it becomes a NOP (its completion still settles the zombie's count).
  ring_.withdraw(s->fd, [](uint64_t ud) { return retag(ud, kOpVoid); });
  close_fd(s->fd);
  ++counters_.closed;
  if (s->inflight > 0) {
    Zombie& z = zombies_[zombie_key(id, g)];
    z.inflight = s->inflight;
    z.memory = std::move(s->memory);
    z.queue = std::move(s->queue);
  }
  sockets_.release(id);
}

void IouringEngine::fail(int id, int err, EventSink* sink) {
  close_socket(id);
  sink->push(kEventClose, id, err);
}

// ---------------------------------------------------------------------------------------------
// Socket calls from JS

int IouringEngine::listen(const ListenRequest& request) {
  int fd = open_listener(request);
  if (fd < 0) return fd;
  // Accepted sockets inherit TCP_NODELAY from the listener; this saves a syscall per accept.
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int id = add_socket(fd, true, false);
  if (id < 0) return id;
  arm_accept(id);
  return id;
}

int IouringEngine::connect(const sockaddr_storage& addr, socklen_t addr_len) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    int err = -errno;
    close_fd(fd);
    return err;
  }
  int id = add_socket(fd, false, true);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->memory = std::make_unique<OpMemory>();
  std::memcpy(&s->memory->addr, &addr, sizeof(addr));
  s->memory->addr_len = addr_len;
  arm_connect(id);
  return id;
}

int64_t IouringEngine::write(int id, const iovec* bufs, int count) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  if (s->shutdown_requested) return -EPIPE;
  size_t sent = 0;
  bool tried = false;
  if (!s->connecting && s->queue.empty()) {
    // Try the send at once, like uv_try_write; only the rest is copied into the queue.
    ssize_t n = send_vectored(s->fd, bufs, count < kMaxSyncIov ? count : kMaxSyncIov);
    if (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK) return n;
    tried = true;
    if (n > 0) {
      sent = static_cast<size_t>(n);
      counters_.bytes_written += sent;
    }
  }
  if (!s->queue.append(bufs, count, sent)) return -ENOMEM;
  if (s->queue.empty()) return 0;
  ++counters_.writes_queued;
  s->drain_pending = true;
  if (!s->connecting && !s->send_inflight) arm_send(id, tried);
  return static_cast<int64_t>(s->queue.size());
}

int IouringEngine::set_reading(int id, bool reading) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  if (s->paused == !reading) return 0;
  s->paused = !reading;
  if (!reading) {
    // Data the receive already took before the cancel lands is held in the inbox.
    cancel_arm(id);
    return 0;
  }
  if (s->listener) {
    maybe_arm_accept(id);
    return 0;
  }
  if (s->datagram) {
    if (s->readable) add_ready(id);
    maybe_arm_datagram(id);
    return 0;
  }
  if (!inbox_empty(s) || s->eof_pending || s->err_pending != 0) add_ready(id);
  maybe_arm_recv(id);
  return 0;
}

int IouringEngine::shutdown(int id, ShutdownResult* result) {
  Socket* s = sockets_.get(id);
  *result = ShutdownResult::kPending;
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  if (s->shutdown_requested) return 0;
  s->shutdown_requested = true;
  if (s->connecting || !s->queue.empty()) return 0;
  if (finish_shutdown(id)) *result = ShutdownResult::kClosed;
  return 0;
}

int IouringEngine::destroy(int id) {
  if (sockets_.get(id) == nullptr) return -EBADF;
  close_socket(id);
  return 0;
}

int IouringEngine::address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  return socket_address(s->fd, peer, out, len);
}

int IouringEngine::socket_fd(int id) {
  Socket* s = sockets_.get(id);
  return s == nullptr ? -EBADF : s->fd;
}

int IouringEngine::udp_open(const UdpRequest& request) {
  int fd = open_datagram(request);
  if (fd < 0) return fd;
  int id = add_socket(fd, false, false);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->datagram = true;
  s->max_datagram = request.max_datagram;
  s->outbox.read_fault_switch();
  arm_datagram_in(id);
  return id;
}

int IouringEngine::udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                                  DatagramBatchResult* result) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->datagram) return -EBADF;
  s->outbox.send_batch(s->fd, datagrams, count, &counters_.bytes_written, result);
  if (result->queued == 0) return 0;
  counters_.writes_queued += static_cast<uint64_t>(result->queued);
  if (!s->out_poll) arm_datagram_out(id);
  return 0;
}

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
  Op op = op_of(cqe.user_data);
  if (op == kOpNone || op == kOpCancel) return;
  int id = id_of(cqe.user_data);
  uint32_t g = gen_of(cqe.user_data);
  bool final = (cqe.flags & IORING_CQE_F_MORE) == 0;
  Socket* s = live(id, g);
  if (s == nullptr) {
    stale(cqe, op, id, g, final);
    return;
  }
  if (final) --s->inflight;
  int res = cqe.res;
  switch (op) {
    case kOpRecv:
      if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
        unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
        if (bufs_.valid(bid)) {
          if (res > 0) {
            counters_.bytes_read += static_cast<uint64_t>(res);
            const uint8_t* data = bufs_.buffer(bid);
            s->inbox.insert(s->inbox.end(), data, data + res);
          }
          bufs_.recycle(bid);
        }
      }
      if (res == 0) s->eof_pending = true;
      if (final) s->arm = kIdle;
      break;
    case kOpAccept:
      // A connection the kernel accepted for a listener that is leaving: it has no id to be
      // announced under, so it is closed (the peer sees it end).
      if (res >= 0) close_fd(res);
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
      if (res > 0) {
        counters_.bytes_written += static_cast<uint64_t>(res);
        s->queue.consume(static_cast<size_t>(res));
      }
      break;
    case kOpConnect:
    case kOpConnectPoll:
      s->connect_op = kOpNone;
      if (op == kOpConnect && res == 0) s->connecting = false;
      break;
    case kOpDatagramIn:
      // What the poll saw is still in the socket: the next engine's poll sees it too.
      if (final) s->arm = kIdle;
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
    // touch the socket again: moving it is exact.
    bool frozen = ring_dead_ && (ring_.flags() & IORING_SETUP_DEFER_TASKRUN) != 0;
    if (!frozen) return -ETIMEDOUT;
  }
  uint32_t g = gen(id);
  out->fd = s->fd;
  static_cast<SocketFlags&>(*out) = *s;
  out->datagram = s->datagram;
  out->max_datagram = s->max_datagram;
  out->unsent.clear();
  // At most one has bytes: a stream socket has no outbox, a datagram socket no byte queue.
  s->queue.copy_to(&out->unsent);
  s->outbox.save(&out->unsent);
  out->undelivered.assign(s->inbox.begin() + static_cast<ptrdiff_t>(s->inbox_head), s->inbox.end());
  out->eof_undelivered = s->eof_pending;
  if (s->inflight > 0) {
    // A frozen operation still names this memory until the ring is torn down.
    Zombie& z = zombies_[zombie_key(id, g)];
    z.inflight = s->inflight;
    z.memory = std::move(s->memory);
    z.queue = std::move(s->queue);
  }
  sockets_.release(id);
  return 0;
}

int IouringEngine::adopt(DetachedSocket&& socket) {
  int id = new_id();
  if (id < 0) return id;  // the fd stays the caller's
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
    maybe_arm_recv(id);
    if (!s->queue.empty()) arm_send(id, false);
  }
  return id;  // had the ring failed meanwhile, the next poll reports it
}

}  // namespace

namespace backend {

const char* const kName = "io_uring";

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  auto engine = std::make_unique<IouringEngine>(config);
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
