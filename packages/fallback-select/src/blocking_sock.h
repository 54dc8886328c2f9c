// blocking_io's sockets and the threads that serve them (see blocking_io.cc for the design). The
// engine (blocking_io.cc) and the thread bodies (blocking_threads.cc) share these types: every
// socket is a Sock its threads hold on to, and the Hub is what the threads of one engine share
// with it. Internal to the blocking_io addon.
#ifndef IOMUX_BLOCKING_SOCK_H_
#define IOMUX_BLOCKING_SOCK_H_

#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "datagram.h"
#include "notifier.h"
#include "socket_options.h"
#include "socket_util.h"
#include "stream.h"
#include "write_queue.h"

namespace iomux {
namespace blocking {

// Accepted connections a listener holds while the main thread has not taken them yet.
constexpr size_t kAcceptAhead = 64;
// Threads that wait in poll() (connect completion, accept off Linux) look at the closing flag
// this often.
constexpr int kWaitSliceMs = 250;
// Pause after a failed accept (EMFILE, ...), so a persistent failure does not spin.
constexpr int kAcceptBackoffMs = 100;
// Fault injection: how long a refused thread start takes (see Hub::spawn_allowed).
constexpr int kRefusedStartDelayMs = 20;
constexpr int kConnectionSlots = 2;  // reader + writer
constexpr int kListenerSlots = 1;
constexpr int64_t kDefaultMaxThreads = 4096;
constexpr int64_t kDefaultStackKb = 64;
// A UDP reader's recvmmsg buffer: kDatagramBatch datagrams, fewer when max_datagram is large.
constexpr size_t kDatagramScratchBytes = 512 * 1024;
// Received datagram bytes a UDP socket holds undelivered before its reader stops receiving (the
// kernel's receive buffer then fills, and drops, as it would for a slow reader).
constexpr size_t kHeldDatagramBytes = 1024 * 1024;
// Send errors a UDP socket holds undelivered; later ones are dropped.
constexpr size_t kHeldSendErrors = 64;

struct Sock;
using SockRef = std::shared_ptr<Sock>;

// What the threads of one engine share with it. Outlives the engine while threads still run.
struct Hub {
  // Takes n thread slots; false when that would pass the bound.
  bool reserve(int n) {
    int current = slots.load(std::memory_order_relaxed);
    do {
      if (current + n > max_threads) return false;
    } while (!slots.compare_exchange_weak(current, current + n, std::memory_order_relaxed));
    return true;
  }
  void unreserve(int n) { slots.fetch_sub(n, std::memory_order_relaxed); }

  // Fault injection (tuning faultThreadStartsBefore): false once that many threads started, so
  // tests can make the second thread of an adopt() fail after the first one started.
  bool spawn_allowed() {
    if (!spawn_limited) return true;
    return spawn_budget.fetch_sub(1, std::memory_order_relaxed) > 0;
  }
  // Fault injection: before a start that will be refused, adopt() waits a little without holding
  // the socket's lock, so the threads it started before are surely running, as they may be when a
  // real pthread_create fails late.
  void delay_refused_start() const {
    if (spawn_limited && spawn_budget.load(std::memory_order_relaxed) <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kRefusedStartDelayMs));
    }
  }

  // Queues s for the main thread and makes sure the wait fd is readable. Threads call it only
  // while holding s->mu with s->closing unset, so nothing is posted for a socket after the
  // engine dropped it.
  void post(const SockRef& s);
  // Makes sure the wait fd is readable.
  void kick() {
    std::lock_guard<std::mutex> lock(mu);
    kick_locked();
  }
  void kick_locked() {
    if (!signaled) {
      signaled = true;
      notifier.signal();
    }
  }

  Notifier notifier;  // the engine's wait fd
  size_t read_chunk = 64 * 1024;
  size_t stack_bytes = 64 * 1024;
  int max_threads = 4096;
  std::atomic<int> slots{0};
  bool spawn_limited = false;              // fault injection; set before any thread starts
  std::atomic<int64_t> spawn_budget{0};    // thread starts left while spawn_limited
  std::atomic<uint64_t> bytes_written{0};  // by writer threads

  std::mutex mu;
  std::vector<SockRef> ready;  // guarded by mu
  bool signaled = false;       // guarded by mu: the notifier holds a wake-up

  std::mutex reserve_mu;
  ReserveFd spare_fd;  // guarded by reserve_mu: given up to shed a connection when out of fds
};

// Datagrams one recvmmsg returned, packed as records (see datagram.h).
struct DatagramBatch {
  std::unique_ptr<uint8_t[]> data;
  std::vector<DatagramRecord> records;
  size_t next = 0;  // records delivered so far
};

// An accepted connection, or the errno of an accept that failed.
struct Accepted {
  SockRef conn;
  int err = 0;
};

// One listener, connection or UDP socket, shared by the engine and the socket's threads.
struct Sock {
  Sock(std::shared_ptr<Hub> owner, int socket_fd, bool is_listener, bool is_datagram = false)
      : hub(std::move(owner)), fd(socket_fd), listener(is_listener), datagram(is_datagram) {}
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  // Runs after the last thread let go: closing the fd here cannot hit a reused fd number.
  ~Sock() {
    if (owns_fd) {
      // Input the application never got (held in the inbox, or read by a reader that then saw
      // the close) is unread input to the peer, as bytes left in the kernel are: Linux resets a
      // socket closed with unread receive data, so this close does as well.
      if (!listener && !datagram && (input_dropped || !stream.inbox.empty())) reset_on_close(fd);
      close_fd(fd);
    }
    if (slots != 0) hub->unreserve(slots);
  }

  const std::shared_ptr<Hub> hub;
  const int fd;
  const bool listener;
  const bool datagram;
  int slots = 0;            // thread slots reserved; set before any thread starts
  size_t max_datagram = 0;  // UDP; set before any thread starts
  bool owns_fd = true;      // false when a failed adopt() hands the fd back; set under mu

  std::mutex mu;
  std::condition_variable reader_cv;  // the reader or accept thread waits here
  std::condition_variable writer_cv;
  std::condition_variable exit_cv;  // detach() waits here for the threads to leave

  // Guarded by mu.
  // Has an id (ACCEPT delivered, or adopt() started every thread): until then no thread touches
  // the fd, so a failed adopt() can hand it back untouched.
  bool attached = false;
  bool closing = false;         // the engine dropped it: threads leave without touching anything
  bool detaching = false;       // detach(): threads leave, keeping what they did in this object
  bool reader_running = false;  // the reader or accept thread has not returned yet
  bool writer_running = false;
  pthread_t reader_thread{};  // valid while reader_running
  pthread_t writer_thread{};
  bool paused = false;  // listener and UDP; a connection's is stream.paused
  // A connection's stream state (the shared stream core): flags, the write queue the writer
  // sends, the inbox the reader fills (with eof_pending / err_pending for how the read side
  // ended). Its calls run under mu.
  StreamState stream;
  bool connect_done = false;  // the reader saw the connect complete; the main thread reports it
  int connect_err = 0;
  bool writer_started = false;
  int write_err = 0;                    // the writer failed (reported as CLOSE)
  bool input_dropped = false;           // the reader read bytes after the close began
  std::deque<Accepted> accepted;        // listener only
  std::deque<DatagramBatch> datagrams;  // UDP: received, not yet delivered
  size_t datagram_bytes = 0;
  DatagramOutbox outbox;        // UDP: datagrams the kernel had no room for yet
  std::deque<int> send_errors;  // UDP: errnos to report as kEventSendError
  bool flush_held = false;      // UDP, fault injection only: the writer waits for the next poll

  bool stopped() const { return closing || detaching; }

  // Guarded by hub->mu.
  bool in_hub = false;

  // Main thread only.
  int id = -1;
  bool released = false;  // the id was released: anything still reported is stale
  bool in_pending = false;
  bool connect_reported = false;
};

enum class Role { kReader, kWriter, kAcceptor };

// Starts a thread of s in `role`. Called with s->mu held, so the thread's bookkeeping is in place
// before it can finish. Returns 0 or -errno.
int spawn_locked(const SockRef& s, Role role);

// Waits until fd is ready for `events` (at most a wait slice); used when a socket turned out to be
// non-blocking. False when interrupted.
bool wait_ready(int fd, short events);

// Starts a connection's writer thread if it is not running yet, else wakes it. Called with s->mu
// held. Returns 0 or -errno.
int start_writer(const SockRef& s);

// Marks s closing and makes its threads return: those parked on a condvar are notified, a reader
// blocked in recv() (or accept()) is woken by a shutdown() of the read side, a writer by the
// interrupt signal or its wait slice. A connection's write side stays open, so the close that
// follows sends FIN or RST as a plain close() would.
void stop(Sock& s);

}  // namespace blocking
}  // namespace iomux

#endif  // IOMUX_BLOCKING_SOCK_H_
