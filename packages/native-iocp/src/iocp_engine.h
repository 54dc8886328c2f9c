// Windows I/O completion port backend: a completion engine on the shared stream core
// (native/src/stream.h), like io_uring's; the engine keeps the overlapped operations, their
// completions and the translation between the two. Implementation files:
//   iocp.cc        setup, the waiter thread, poll and the completion dispatch, availability
//   iocp_ops.cc    starting operations (AcceptEx, ConnectEx, WSARecv, WSASend) and what each
//                  completion does to its socket
//   iocp_calls.cc  the Engine calls from JS (listen, connect, write, ...) and the runtime fallback
//
// Reads: one zero-byte overlapped WSARecv per idle connection (as libuv): it completes when data
// arrives and holds no buffer meanwhile, so an idle connection costs no receive memory; the data
// is then read with non-blocking recv() straight into the batch slab until WSAEWOULDBLOCK, and the
// zero-byte read is posted again. A paused socket simply does not post it again (the pending one
// consumes nothing). UDP does the same with a zero-byte MSG_PEEK WSARecvFrom and recvmmsg (the
// shim's WSARecvFrom loop). Accepts: kAcceptsPerListener AcceptEx calls in flight per listener,
// each on a pre-created socket, SO_UPDATE_ACCEPT_CONTEXT on completion. Writes: the core's
// synchronous non-blocking send first; what the kernel did not take is queued and sent by one
// overlapped WSASend per connection. Connects: ConnectEx on a socket bound to the wildcard
// address, SO_UPDATE_CONNECT_CONTEXT on completion.
//
// Threads: Node's thread makes every Engine call. A waiter thread blocks in
// GetQueuedCompletionStatusEx, hands each batch of completions to Node's thread (wake(), i.e. an
// N-API thread-safe call) and waits until poll() has taken it before dequeuing the next: libuv
// cannot watch a completion port with uv_poll, and a dequeue on Node's thread would block it.
//
// Operation memory: each socket's OVERLAPPED structures live in an Io block on the heap, which
// outlives the socket while the kernel may still complete one of them (closesocket and CancelIoEx
// complete pending operations with ERROR_OPERATION_ABORTED): a closed socket's Io is an orphan
// until its last completion arrives. FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set on every socket
// when all installed TCP/UDP providers are IFS handles (libuv's rule): an operation that
// succeeds at once then posts no completion, and the engine queues the result itself.
#ifndef IOMUX_IOCP_IOCP_ENGINE_H_
#define IOMUX_IOCP_IOCP_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conn_table.h"
#include "datagram.h"
#include "iomux/engine.h"
#include "platform_win32_posix.h"
#include "socket_util.h"
#include "stream.h"

namespace iomux {
namespace iocp {

constexpr ULONG kBatch = 256;           // completions per GetQueuedCompletionStatusEx
constexpr int kAcceptsPerListener = 8;  // AcceptEx calls in flight per listener
constexpr int kMaxSendBufs = 64;        // WSABUFs per queued WSASend
constexpr int kReadsPerPoll = 4;        // recv() calls per readable socket per poll (fairness)
constexpr ULONG_PTR kStopKey = 1;       // completion key that stops the waiter thread
constexpr ULONG_PTR kSocketKey = 2;     // completion key of every socket operation
constexpr DWORD kSettleBudgetMs = 250;  // wait for cancelled operations in detach / teardown
constexpr size_t kAddressSlot = sizeof(sockaddr_storage) + 16;  // AcceptEx's per-address room

enum class OpKind : uint8_t { kAccept, kRead, kSend, kConnect };

struct Io;

// One overlapped operation. `ov` first: a completion's OVERLAPPED* is the Op*.
struct Op {
  OVERLAPPED ov{};
  Io* io = nullptr;
  OpKind kind = OpKind::kRead;
  bool pending = false;  // started; its completion has not been handled yet
  // Accepts: the pre-created socket and AcceptEx's address buffer; done = completed while the
  // listener was paused or the batch was full, waiting to be delivered.
  int accept_fd = -1;
  bool done = false;
  DWORD done_bytes = 0;
  int done_error = 0;
  char addresses[2 * kAddressSlot];
  WSABUF bufs[kMaxSendBufs];  // sends
};

// The kernel-facing memory of one socket (stable address; see the file comment).
struct Io {
  int id = -1;
  int fd = -1;
  bool orphan = false;  // the socket is gone: completions only free the block
  Op read;
  Op send;
  Op connect;
  std::vector<std::unique_ptr<Op>> accepts;
  int pending() const {
    int n = (read.pending ? 1 : 0) + (send.pending ? 1 : 0) + (connect.pending ? 1 : 0);
    for (const auto& op : accepts) n += op->pending ? 1 : 0;
    return n;
  }
};

class IocpEngine final : public Engine {
 public:
  explicit IocpEngine(const EngineConfig& config) : config_(config) {}
  ~IocpEngine() override;

  int init();

  int wait_fd() const override { return -1; }
  void set_waker(Waker wake, void* data) override;
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
  int udp_open(const UdpRequest& request) override;
  int udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                     DatagramBatchResult* result) override;
  int socket_fd(int id) override;

 private:
  struct Socket : StreamState {
    bool in_use = false;
    bool datagram = false;
    bool readable = false;  // the zero-byte read completed: recv() until WSAEWOULDBLOCK
    bool in_ready = false;  // listed in ready_
    int fd = -1;
    Io* io = nullptr;
    size_t max_datagram = 0;
    DatagramOutbox outbox;
  };

  // ---- iocp.cc ----
  void waiter_main();
  void kick();
  void take_batch();
  void handle(const OVERLAPPED_ENTRY& entry, EventSink* sink);
  void queue_inline(Op* op, DWORD bytes);
  int associate(int fd);
  void stop_waiter();
  void settle_orphans();

  // ---- iocp_ops.cc ----
  int add_socket(int fd, bool listener, bool connecting);
  bool post_accept(int id, Op* op);
  void post_read(int id);
  void post_send(int id);
  int post_connect(int id, const sockaddr_storage& addr, socklen_t addr_len);
  bool finish_accept(int listener_id, Op* op, EventSink* sink);
  void on_read(int id, int error, EventSink* sink);
  void on_send(int id, DWORD bytes, int error, EventSink* sink);
  void on_connect(int id, int error, EventSink* sink);
  void drain_stream(int id, EventSink* sink);
  void drain_datagrams(int id, EventSink* sink);
  void deliver_ready(EventSink* sink);
  void add_ready(int id);
  int operation_error(const Op* op);
  void settle_fate(int id, StreamFate fate) {
    if (fate == StreamFate::kClose) close_socket(id);
  }
  void fail(int id, int err, EventSink* sink) { settle_fate(id, StreamState::fail(id, err, sink)); }
  void close_socket(int id);
  // Forgets the socket (its id is released); its Io lives on as an orphan while operations are
  // pending.
  void release(int id);
  // Posts kAcceptsPerListener AcceptEx calls on a new or adopted listener.
  void start_accepting(int id);
  void forget_io(Io* io);
  bool wait_for_op(Op* op);

  EngineConfig config_;
  HANDLE port_ = nullptr;
  LPFN_ACCEPTEX accept_ex_ = nullptr;
  LPFN_CONNECTEX connect_ex_ = nullptr;
  bool skip_on_success_ = false;
  ConnTable<Socket> sockets_;
  std::vector<int> ready_;                 // sockets with data, accepts or held input to deliver
  std::vector<Io*> orphans_;               // closed sockets' blocks with operations still pending
  std::vector<OVERLAPPED_ENTRY> backlog_;  // completions taken but not handled yet, in order
  size_t backlog_head_ = 0;
  std::vector<int> outboxes_;  // UDP sockets with queued datagrams
  Counters counters_;
  int broken_ = 0;

  // Shared with the waiter thread, under mu_.
  std::mutex mu_;
  std::condition_variable taken_;
  std::vector<OVERLAPPED_ENTRY> handed_;  // the batch the waiter dequeued, for poll()
  int waiter_error_ = 0;                  // positive errno once GetQueuedCompletionStatusEx failed
  bool stopping_ = false;
  Waker waker_ = nullptr;
  void* waker_data_ = nullptr;
  std::thread waiter_;
};

// Availability: "" or why IOCP cannot run here (checked in iocp.cc).
std::string probe_iocp();

}  // namespace iocp
}  // namespace iomux

#endif  // IOMUX_IOCP_IOCP_ENGINE_H_
