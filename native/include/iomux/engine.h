// The native side of the iomux Backend contract.
//
// Every backend (epoll, io_uring, kqueue, IOCP, select, blocking_io) implements `Engine`. The
// contract is at socket level (accept, data, drain, end, close) rather than fd readiness, so
// readiness kernels (epoll, kqueue, select) and completion kernels (io_uring, IOCP) fit alike.
//
// Threading: every Engine method runs on Node's main thread and never blocks. An engine tells the
// glue when it has work through `wait_fd()` (an fd libuv watches with uv_poll: the epoll fd, an
// io_uring eventfd, ...). `poll()` then drains up to `EventSink::capacity` events without waiting.
//
// Ids: connections and listeners share one id space (small integers, reused). An id that an
// engine releases is not handed out again before the next `poll()`, so an event batch that JS is
// still walking never refers to two different sockets by one id.
#ifndef IOMUX_ENGINE_H_
#define IOMUX_ENGINE_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace iomux {

class SharedPayload;  // write_queue.h: a broadcast's bytes, shared by the queues that keep them

// Event records: four int32 each, [type, id, a, b], in a shared Int32Array.
enum EventType : int32_t {
  kEventAccept = 1,       // id: new connection, a: listener id
  kEventConnect = 2,      // id: connection, a: 0 or errno (the id is released on error)
  kEventData = 3,         // id, a: offset in the batch's slab, b: length
  kEventEnd = 4,          // id: the peer finished sending (FIN)
  kEventDrain = 5,        // id: the write queue became empty
  kEventClose = 6,        // id: the socket is closed and the id released; a: 0 or errno
  kEventAcceptError = 7,  // id: listener, a: errno (EMFILE, ENFILE, ...); the listener stays open
  kEventDatagram = 8,     // id: UDP socket, a: slab offset of a DatagramHeader + payload, b: length
  kEventDatagramTruncated = 9,  // as kEventDatagram; the datagram was longer than max_datagram
  kEventSendError = 10,         // id: UDP socket, a: errno of a queued datagram that failed
};

// Precedes each datagram's payload in the slab: the sender's address.
struct DatagramHeader {
  uint8_t family;  // 4 or 6
  uint8_t reserved;
  uint16_t port;  // network byte order (JS reads it big-endian)
  uint8_t address[16];
};
static_assert(sizeof(DatagramHeader) == 20, "JS reads the header as 20 bytes");

constexpr int kEventInts = 4;
// The most events one socket adds while being served once (e.g. DATA, END, CLOSE).
constexpr int kMaxEventsPerSocket = 3;

// Where an engine's poll() writes the batch that JS reads in one crossing.
struct EventSink {
  int32_t* events = nullptr;  // capacity * kEventInts int32
  int capacity = 0;
  int count = 0;
  // Read data: this batch's bytes are slab[base, slab_used), where base is what reset() was given
  // (bytes before it belong to earlier batches that JS may still hold; never write them).
  uint8_t* slab = nullptr;
  size_t slab_capacity = 0;
  size_t slab_used = 0;
  bool slab_exhausted = false;  // set by an engine that had data to read but no room left

  bool full() const { return slab_exhausted || count + kMaxEventsPerSocket > capacity; }
  void push(int32_t type, int32_t id, int32_t a = 0, int32_t b = 0) {
    int32_t* e = events + static_cast<ptrdiff_t>(count) * kEventInts;
    e[0] = type;
    e[1] = id;
    e[2] = a;
    e[3] = b;
    ++count;
  }
  void reset(size_t base = 0) {
    count = 0;
    slab_used = base;
    slab_exhausted = false;
  }
};

// Cumulative counters an engine keeps; read by reactor.stats().
struct Counters {
  uint64_t polls = 0;
  uint64_t events = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t accepted = 0;
  uint64_t closed = 0;
  uint64_t writes_queued = 0;  // writes that did not go out at once and were queued
  uint64_t accept_errors = 0;
};

struct EngineConfig {
  int max_events = 1024;
  size_t read_chunk = 64 * 1024;  // largest single read into the slab
  // Backend-specific tuning knobs by name (e.g. "iouringSqEntries", "blockingMaxThreads"). They
  // are read from the environment, parsed and range-checked in TypeScript
  // (packages/core/src/tuning.ts), so a bad value is a ConfigError there; an engine never reads
  // the environment itself. A knob that is absent takes the backend's default.
  std::map<std::string, int64_t> tuning;

  int64_t tune(const std::string& name, int64_t fallback) const {
    auto it = tuning.find(name);
    return it == tuning.end() ? fallback : it->second;
  }
};

struct ListenRequest {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int backlog = 511;
  bool reuse_port = false;
  bool ipv6_only = false;
};

// An outgoing stream connection: where to, and optionally from where (node:net's localAddress and
// localPort). The local address is bound before the connect starts, without SO_REUSEADDR, so a
// port another socket holds fails the connect() call itself with EADDRINUSE, and an address of the
// other family with what the kernel says (Linux: EAFNOSUPPORT or EINVAL; Wine's Winsock:
// EOPNOTSUPP).
struct ConnectRequest {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  sockaddr_storage local{};
  socklen_t local_len = 0;  // 0: no local address, the kernel picks one at connect time
};

// The state of a TCP socket that every engine keeps and a runtime fallback carries over. Engines
// embed it in their own per-socket struct, so detach/adopt copy it in one assignment.
struct SocketFlags {
  bool listener = false;
  bool connecting = false;
  bool paused = false;
  bool read_eof = false;  // END delivered: no more reads
  bool shutdown_requested = false;
  bool write_shut = false;
  bool drain_pending = false;
};

// A socket handed from a failing engine to its successor (runtime fallback). The fd stays open;
// everything the first engine knew about the socket travels with it, so no byte is lost,
// duplicated or reordered.
struct DetachedSocket : SocketFlags {
  int fd = -1;
  std::vector<uint8_t> unsent;       // queued writes, in order
  std::vector<uint8_t> undelivered;  // bytes read from the kernel but not yet delivered to JS
  bool eof_undelivered = false;      // EOF read from the kernel but END not yet delivered
  // A UDP socket: `unsent` then holds its queued datagrams (DatagramOutbox::save in
  // native/src/datagram.h); `undelivered` and the stream flags other than `paused` do not apply.
  bool datagram = false;
  size_t max_datagram = 0;
  // A listener: connections the kernel accepted for it that were never announced (a completion
  // engine's accepts in flight at the detach). The fds are open and go with it; the successor
  // adopts and announces them as accepted connections.
  std::vector<int> accepted;
};

struct UdpRequest {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  bool reuse_addr = false;  // SO_REUSEADDR only when asked for, as node:dgram's reuseAddr
  bool reuse_port = false;
  bool ipv6_only = false;
  size_t max_datagram = 65536;  // receive size per datagram; longer ones arrive truncated
};

// One datagram of an Engine::udp_send_batch call.
struct OutgoingDatagram {
  const sockaddr_storage* to = nullptr;  // null: the connected peer
  socklen_t to_len = 0;
  const iovec* bufs = nullptr;  // the payload, gathered
  int count = 0;
};

// What Engine::udp_send_batch did with a batch.
struct DatagramBatchResult {
  int taken = 0;   // datagrams sent or queued, from the first, in order
  int queued = 0;  // of those taken, how many wait in the send queue
  // When taken < count: why datagrams[taken] was refused (ENOBUFS: the queue is full; EMSGSIZE,
  // EACCES, ...). The ones after it were not tried.
  int error = 0;
};

// Result of Engine::shutdown: whether the socket is already fully closed.
enum class ShutdownResult { kPending, kClosed };

class Engine {
 public:
  virtual ~Engine() = default;

  // The fd libuv should watch for readability; poll() is called when it fires.
  virtual int wait_fd() const = 0;

  // Windows, where libuv watches no kernel object but sockets: the glue gives the engine a wake-up
  // call instead of watching wait_fd(). The engine calls wake(data) from any of its threads,
  // without blocking, whenever poll() has work; wake-ups may coalesce, so poll() drains all that
  // is ready. set_waker(nullptr, nullptr) returns once no thread of the engine can still call the
  // previous one.
  using Waker = void (*)(void* data);
  virtual void set_waker(Waker /*wake*/, void* /*data*/) {}

  // Drains ready work into the sink without blocking. Returns the number of events, or -errno when
  // the engine itself failed (the reactor then falls back). An engine whose kernel call fails after
  // it already built part of a batch (bytes read, accepts, closes) returns that batch and reports
  // the failure through broken() and the next poll(): what was taken from the kernel is never lost.
  virtual int poll(EventSink* sink) = 0;

  // 0, or -errno once the engine itself failed; the glue then polls once more to report it.
  virtual int broken() const { return 0; }

  // Opens a listening socket. Returns its id, or -errno (EADDRINUSE, EACCES, ...).
  virtual int listen(const ListenRequest& request) = 0;

  // Starts a non-blocking connect (bound to request.local first, when given). Returns the
  // connection id, or -errno (a failed bind included). Completion is reported by a kEventConnect.
  virtual int connect(const ConnectRequest& request) = 0;

  // Sends at once what the kernel takes and queues the rest (copied). Returns the bytes still
  // queued after this call, or -errno (EPIPE after end(), ECONNRESET, ...). `shared` is given by a
  // broadcast (one payload written to many sockets, bufs its only buffer): the rest is queued as a
  // reference to the payload's one shared copy instead of a copy per socket. nullptr otherwise.
  virtual int64_t write(int id, const iovec* bufs, int count, SharedPayload* shared) = 0;

  // Stops or restarts reading; data stays in the kernel while paused.
  virtual int set_reading(int id, bool reading) = 0;

  // Half-closes after the queue is flushed. kClosed: the peer had already ended, so the socket is
  // closed and the id released now (no kEventClose follows).
  virtual int shutdown(int id, ShutdownResult* result) = 0;

  // Closes at once, dropping queued writes. No kEventClose follows.
  virtual int destroy(int id) = 0;

  // Local (peer = false) or remote address of a socket.
  virtual int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) = 0;

  virtual const Counters& counters() const = 0;

  // Runtime fallback. detach() makes the engine forget a socket without closing its fd (in-flight
  // kernel operations are cancelled and accounted for first); the id is released. adopt() takes
  // over such a socket and returns its new id. Both return -errno on failure.
  virtual int detach(int id, DetachedSocket* out) = 0;
  virtual int adopt(DetachedSocket&& socket) = 0;
  // Hands one socket over while the engine goes on serving the others (conn.transfer(),
  // toNetSocket): as detach(), for this socket alone, with nothing done to any other socket. An
  // engine whose detach() already touches only the one socket need not override it; io_uring's
  // detach() settles the whole ring (a migration moves every socket), so it has its own.
  virtual int hand_off(int id, DetachedSocket* out) { return detach(id, out); }

  // UDP. udp_open binds a datagram socket and returns its id; datagrams arrive as kEventDatagram.
  // Engines share the datagram logic in native/src/datagram.h. Backends without datagram support
  // return -EOPNOTSUPP, which JS reports as a typed error naming the backend.
  virtual int udp_open(const UdpRequest& /*request*/) { return -EOPNOTSUPP; }
  // Sends datagrams in order with as few system calls as the kernel allows (sendmmsg: up to 32 a
  // call); what the kernel has no room for is queued (bounded) until the socket is writable.
  // Fills *result and returns 0, or -errno for the socket itself (EBADF).
  virtual int udp_send_batch(int /*id*/, const OutgoingDatagram* /*datagrams*/, int /*count*/,
                             DatagramBatchResult* /*result*/) {
    return -EOPNOTSUPP;
  }
  // One datagram (to == nullptr: to the connected peer): 0 sent, 1 queued until the socket is
  // writable, or -errno (ENOBUFS when the bounded queue is full).
  virtual int udp_send(int id, const sockaddr_storage* to, socklen_t to_len, const iovec* bufs,
                       int count) {
    OutgoingDatagram datagram{to, to_len, bufs, count};
    DatagramBatchResult result;
    int rc = udp_send_batch(id, &datagram, 1, &result);
    if (rc < 0) return rc;
    return result.taken == 0 ? -result.error : result.queued;
  }
  // The fd behind an id, for socket options the glue sets directly (broadcast, multicast, ...).
  virtual int socket_fd(int /*id*/) { return -EOPNOTSUPP; }
};

// Each backend package defines these two in its kernel-facing file.
namespace backend {
// Short name: "epoll", "io_uring", "select", ...
extern const char* const kName;
// Empty when the backend can run here, else why not (checked without side effects that last).
// A non-zero simulated_errno asks for the explanation the backend would give had its setup syscall
// failed with that errno (fault injection: e.g. EPERM for io_uring under a seccomp filter).
std::string probe(int simulated_errno);
// Creates an engine, or returns null and sets *error to -errno.
std::unique_ptr<Engine> create(const EngineConfig& config, int* error);
}  // namespace backend

}  // namespace iomux

#endif  // IOMUX_ENGINE_H_
