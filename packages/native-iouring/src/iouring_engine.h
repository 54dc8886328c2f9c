// Linux io_uring backend: a completion engine on the shared stream core (native/src/stream.h),
// which decides what a stream does next (inbox, DRAIN, FIN, END/CLOSE order); the engine keeps
// the ring submissions, their completions and the translation between the two. This header
// declares it for its implementation files:
//   iouring.cc              setup, teardown, the eventfd, poll and the completion dispatch
//   iouring_submit.cc       preparing SQEs (receives, accepts, sends, connects, polls, cancels)
//   iouring_completions.cc  what each completion does to its socket
//   iouring_calls.cc        the Engine calls from JS (listen, connect, write, ...)
//   iouring_migrate.cc      runtime fallback (settle, detach, adopt)
//   iouring_probe.cc        availability diagnostics
//
// Reads: one multishot IORING_OP_RECV per connection selects buffers from a provided-buffer ring;
// each completion is copied into the batch slab and its buffer goes straight back to the ring.
// Bytes that do not fit (slab full, socket paused) wait in the socket's inbox, in order, and go
// out first in a later poll. That copy was 16.5-18 % of the server's CPU samples on a 4 KiB
// pipelined echo (bench/results/profile-24.md), so a connection whose receive fills a whole
// provided buffer (a bulk stream) switches to direct reads: its RECV is cancelled and, once its
// last completion is in, a one-shot POLL_ADD (POLLIN) is armed instead; each readiness completion
// is answered with one recv() straight into the slab, as epoll's engine reads, and the poll is
// armed again: arming checks the level, so bytes left behind (or a FIN) fire it at once and are
// read in a later round of the same poll. A socket the batch had no room for stays in ready_ and
// is read first in the next poll.
// A direct reader whose wake-ups keep bringing less than a provided buffer goes back to the RECV
// the same way (poll cancelled, RECV armed once the poll's last completion is in).
// The kernel never writes into the slab on its own: no arena memory is handed to it ahead of the
// data, so transient and owned read buffers, detach and hand-off work as on the copy path (the
// bytes a direct socket has not read stay in the kernel's socket).
//
// Accepts: one multishot IORING_OP_ACCEPT per listener. Writes: a synchronous send() first; what
// the kernel did not take is queued and flushed by one in-flight IORING_OP_SENDMSG per
// connection. Connects: IORING_OP_CONNECT.
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
// The glue watches an eventfd (a Notifier, see notifier.h) registered with the ring. poll() clears
// it first, then submits and reaps; before returning it re-signals the eventfd when anything is
// left (CQEs it had no room for, undelivered inbox bytes, deferred task work), so nothing waits for
// a wake-up that already happened.
#ifndef IOMUX_IOURING_IOURING_ENGINE_H_
#define IOMUX_IOURING_IOURING_ENGINE_H_

#ifdef __linux__

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include "notifier.h"
#include "socket_util.h"
#include "stream.h"
#include "uring.h"
#include "write_queue.h"

namespace iomux {
namespace iouring {

using uring::BufferRing;
using uring::Ring;

constexpr unsigned kSqEntries = 4096;
constexpr unsigned kCqEntries = 16384;
// 16 MiB of receive buffers: 8 KiB keeps bulk transfers at few completions per MiB, 2048 of them
// leave room for a completion per connection per poll at a thousand busy connections.
constexpr unsigned kBufCount = 2048;
constexpr unsigned kBufSize = 8192;
constexpr uint16_t kBufGroup = 0;
constexpr int kMaxIov = 32;  // iovecs per queued SENDMSG
// Submit+reap rounds per poll at most. A poll goes on entering the ring while the kernel reports
// deferred task work (IORING_SQ_TASKRUN) or overflowed completions and the batch has room, since
// one io_uring_enter runs only about 20 task-work items (Linux 6.13+); 4 rounds capped a batch at
// about 80 of 1000 busy connections. The bound only keeps a kernel that keeps reporting work
// without posting completions from holding Node's thread.
constexpr int kMaxRounds = 256;
constexpr uint32_t kGenMask = 0xFFFFFF;
// How long a runtime migration (all its detach calls together) or the engine's teardown may wait
// for the kernel to give back cancelled operations. Cancels of socket operations complete within
// one io_uring_enter in practice; the bound only keeps a wedged ring from freezing Node's thread.
constexpr long long kSettleBudgetNs = 250000000LL;
// How long handing one socket over (conn.transfer) may wait for its cancelled operations. They
// come back within the first io_uring_enter in practice; past this the socket stays (ETIMEDOUT).
constexpr long long kHandOverBudgetNs = 50000000LL;

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
  kOpRecvPoll = 11,     // one-shot POLLIN on a stream socket that reads directly (see below)
};

// iouringDirectRecv: when a stream socket stops receiving through provided buffers and reads with
// recv() straight into the batch slab after a POLLIN completion instead (see on_recv).
enum DirectRecv : uint8_t {
  kDirectOff = 0,     // never: every byte goes through a provided buffer and is copied
  kDirectAuto = 1,    // once a receive filled a whole provided buffer (a bulk stream)
  kDirectAlways = 2,  // from the first receive (tests: the conformance suite on this path)
};
// Room below which a direct read is not tried and the batch ends (as readiness.cc's kMinRead).
constexpr size_t kMinDirectRead = 4096;
// kDirectAuto: a direct reader whose wake-ups brought less than a provided buffer's worth this
// many times in a row goes back to the RECV (a recv() per wake-up costs more than a small copy).
constexpr uint8_t kSmallDrainsToLeave = 8;

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

inline long long now_ns() {
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
inline void leak_for_kernel(std::unique_ptr<OpMemory>* memory, WriteQueue* queue) {
  (void)memory->release();
  (void)new WriteQueue(std::move(*queue));
}

// The first of uring::setup_choices() without DEFER_TASKRUN.
constexpr size_t kFirstCoopSetup = 2;

// Tuning and test switches, from EngineConfig::tuning (parsed and range-checked in TypeScript,
// packages/core/src/tuning.ts). The clamps here only keep a caller that bypasses TypeScript from
// handing the kernel nonsense: an out-of-range value takes the default.
struct Tuning {
  bool multishot = true;
  bool eventfd_toggle = true;
  uint8_t direct_recv = kDirectAuto;
  size_t first_setup = 0;
  bool check_deferred_wakeup = true;  // init(): fall back to COOP_TASKRUN where it fails
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
    int64_t direct = config.tune("iouringDirectRecv", kDirectAuto);
    t.direct_recv = static_cast<uint8_t>(direct >= kDirectOff && direct <= kDirectAlways
                                             ? direct
                                             : static_cast<int64_t>(kDirectAuto));
    // iouringSetup: 0 default (best first), 1 coop (skip DEFER_TASKRUN), 2 basic (no task-run
    // flags), 3 none (no setup flags at all): indices into uring::setup_choices(); 4 defer: best
    // first without init()'s eventfd check, so DEFER_TASKRUN is kept even where its eventfd
    // ignores deferred work (completions then wait for other wake-ups; the tests use it for what
    // only DEFER_TASKRUN guarantees, an exact move of every socket off a ring that died).
    switch (config.tune("iouringSetup", 0)) {
      case 1:
        t.first_setup = kFirstCoopSetup;
        break;
      case 2:
        t.first_setup = 3;
        break;
      case 3:
        t.first_setup = uring::setup_choices().size() - 1;
        break;
      case 4:
        t.first_setup = 0;
        t.check_deferred_wakeup = false;
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
  // The ring, its capability check and its registered eventfd, from setup choice `first` on.
  int open_ring(size_t first);
  // 1 when the registered eventfd fires for a completion that waits as deferred task work, 0 when
  // it does not, or -errno (see init()).
  int deferred_work_signals();

  int wait_fd() const override { return notifier_.fd(); }
  int poll(EventSink* sink) override;
  int broken() const override { return broken_; }
  int listen(const ListenRequest& request) override;
  int connect(const ConnectRequest& request) override;
  int64_t write(int id, const iovec* bufs, int count, SharedPayload* shared) override;
  int set_reading(int id, bool reading) override;
  int shutdown(int id, ShutdownResult* result) override;
  int destroy(int id) override;
  int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) override;
  const Counters& counters() const override { return counters_; }
  int detach(int id, DetachedSocket* out) override;
  int adopt(DetachedSocket&& socket) override;
  int hand_off(int id, DetachedSocket* out) override;
  int udp_open(const UdpRequest& request) override;
  int udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                     DatagramBatchResult* result) override;
  int socket_fd(int id) override;

 private:
  struct Socket : StreamState {
    bool in_use = false;
    bool send_inflight = false;
    bool in_ready = false;     // listed in ready_
    bool accept_poll = false;  // a listener's armed operation is the POLLIN wait, not the accept
    bool datagram = false;     // a UDP socket: `arm` is its POLLIN poll
    // UDP, and streams that read directly: the poll reported data not drained yet.
    bool readable = false;
    bool direct = false;       // a stream that reads with recv() into the slab (kOpRecvPoll)
    bool recv_poll = false;    // the armed receive is the kOpRecvPoll poll, not a RECV
    uint8_t small_drains = 0;  // direct: wake-ups in a row that read less than a buffer
    bool out_poll = false;     // UDP: the POLLOUT poll for the outbox is armed
    uint8_t arm = kIdle;       // the receive (or, for a listener, the accept)
    Op connect_op = kOpNone;
    int fd = -1;
    int inflight = 0;  // operations whose last CQE has not arrived
    std::unique_ptr<OpMemory> memory;
    size_t max_datagram = 0;
    DatagramOutbox outbox;  // UDP; only synchronous sendmmsg reads it, so no zombie keeps it
    // A listener: connections accepted while its operations were settled (absorb), not announced;
    // they leave with detach() or are closed with the listener.
    std::vector<int> accepted;
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

  int next_generation(int id);
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
  void arm_recv_poll(int id);
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
  // Handles completions until the batch is full or none are left; returns how many it handled.
  size_t reap(EventSink* sink);
  void stash_cq();
  Socket* claim(const Completion& cqe, Op* op, int* id, bool* final);
  void handle(const Completion& cqe, EventSink* sink);
  void stale(const Completion& cqe, Op op, int id, uint32_t gen, bool final);
  void on_accept(int id, int res, bool final, EventSink* sink);
  void on_recv(int id, const Completion& cqe, bool final, EventSink* sink);
  void on_send(int id, int res, EventSink* sink);
  void on_connect(int id, Op op, int res, EventSink* sink);
  void on_datagram_in(int id, int res, bool final, EventSink* sink);
  void on_datagram_out(int id, EventSink* sink);
  void on_recv_poll(int id, int res, bool final, EventSink* sink);
  // One recv() into the batch slab; true when the batch had no room for it (the socket must stay
  // in ready_).
  bool read_direct(int id, EventSink* sink);
  void drained(int id, size_t got);
  // One recvmmsg into the batch; true when datagrams may be left (the socket must stay in ready_).
  bool drain_datagrams(Socket* s, int id, EventSink* sink);

  void take_data(int id, const uint8_t* data, size_t len, EventSink* sink);
  void deliver_ready(EventSink* sink);
  void add_ready(int id);
  void after_send(int id, bool poll_first, EventSink* sink);
  void flush_now(int id, EventSink* sink);
  // Closes the socket when the stream core says it is finished (its CLOSE is already pushed).
  void settle_fate(int id, StreamFate fate) {
    if (fate == StreamFate::kClose) close_socket(id);
  }
  void close_socket(int id);
  void release(int id);
  void fail(int id, int err, EventSink* sink);

  // Runtime fallback and teardown: cancel everything, collect completions into socket state.
  bool settle(bool include_zombies);
  void cancel_everything();
  void absorb(const Completion& cqe);
  bool ops_in_flight(bool include_zombies);
  // hand_off(): completions of one socket absorbed, every other one kept in backlog_ in order.
  void sort_out_completions(int id, uint32_t gen);
  void resume_after_failed_hand_off(int id);
  // True when every operation the socket has in flight only waits for readiness (a poll).
  bool only_polls_in_flight(const Socket& s) const;
  void save_detached(int id, DetachedSocket* out);

  // The process's real, effective and saved ids; see credentials_changed() in iouring.cc.
  struct Credentials {
    uid_t uid[3] = {0, 0, 0};
    gid_t gid[3] = {0, 0, 0};
    static Credentials current();
    bool operator==(const Credentials& other) const;
  };
  bool credentials_changed();

  bool notifier_lost(int rc);
  void kick() {
    if (in_poll_ || kicked_) return;
    kicked_ = true;
    (void)notifier_lost(notifier_.signal());
  }
  bool work_left();

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
  // The eventfd registered with the ring: wait_fd(). Abandoned once closed by other code.
  Notifier notifier_;
  ReserveFd reserve_;    // sheds a pending peer when accept fails with EMFILE/ENFILE
  int broken_ = 0;       // -errno once the ring itself failed
  Credentials creator_;  // who created the ring (captured in init)
  // Fault injection (tuning faultKernelAfter / faultKernelErrno): after this many successful
  // io_uring_enter calls inside poll(), the next one fails with fault_errno_. -1: off.
  int64_t fault_after_ = -1;
  int fault_errno_ = EIO;
  // Fault injection (tuning faultHandOverTimeout): hand_off() gives up after submitting its
  // cancels without reaping them, as when the kernel does not give the operations back in time.
  bool fault_hand_off_ = false;
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

}  // namespace iouring
}  // namespace iomux

#endif  // __linux__

#endif  // IOMUX_IOURING_IOURING_ENGINE_H_
