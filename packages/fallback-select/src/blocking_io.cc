// blocking_io: portable blocking sockets on native threads, the last-resort backend. It needs no
// readiness or completion API at all, only socket calls that block.
//
// Threads (each with a small stack, the blockingStackKb tuning knob, IOMUX_BLOCKING_STACK_KB):
// - one accept thread per listener, blocked in accept();
// - one reader thread per connection, blocked in recv(); for an outgoing connection it first waits
//   for the non-blocking connect() the main thread started to complete;
// - one writer thread per connection, started the first time a write cannot go out at once, then
//   blocked in sendmsg() on the queued bytes (or parked on a condvar while the queue is empty);
// - per UDP socket, a reader thread blocked in a batch receive (recvmmsg(MSG_WAITFORONE) where the
//   kernel has it), which hands whole batches of datagrams over, and a writer thread (started with
//   it) that sends the outbox with blocking batch sends. udp_send_batch itself sends with
//   MSG_DONTWAIT and queues only what the kernel refuses.
// The number of threads is bounded (blockingMaxThreads, IOMUX_BLOCKING_MAX_THREADS): a connection
// or UDP socket reserves two slots, a listener one. Past the bound an accept reports
// kEventAcceptError with EAGAIN and a connect returns -EAGAIN; nothing waits.
//
// Every socket is a shared Sock object its threads hold on to, so an id the engine releases never
// leaves a thread with a dangling pointer, and a late result for it is simply dropped (the Sock is
// marked released). Threads hand results over under the Sock's mutex and post the Sock to the
// Hub's ready list, signalling a Notifier (the wait fd). poll() on Node's main thread drains that
// list into the batch. Reads are held per connection in order (about one read chunk; then the
// reader stops reading, so the kernel and the peer feel the backpressure), and pausing stops both
// delivery and the reader.
//
// A connection's state is the shared stream core's StreamState (native/src/stream.h), used under
// the Sock's mutex: its write queue is what the writer thread sends, its inbox is what the reader
// thread fills, and every decision about DRAIN, the FIN, END and CLOSE and their order is the
// core's, made on the main thread in poll(). This file keeps only the engine's bookkeeping and
// the hand-over between threads; blocking_threads.cc holds the threads and their blocking calls.
//
// Node's main thread never blocks: write() sends with MSG_DONTWAIT and queues the rest; closing
// marks the Sock and wakes its threads (see stop(): a connection's write side stays open, so its
// close sends FIN or RST as a plain close() does). The fd itself is closed by whoever drops the
// last reference, after its threads are gone, so an fd number is never reused under a thread's
// feet. detach() (runtime fallback away from this backend) cannot use shutdown(): it interrupts the
// threads with a signal instead (one the application does not use, see blocking_interrupt.h) and
// waits the few microseconds they need to return. Datagrams a
// UDP reader had taken from the kernel but not delivered yet are dropped by a detach (the glue has
// no way to hand received datagrams to the next engine); its queued sends travel with it.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blocking_interrupt.h"
#include "blocking_migrate.h"
#include "blocking_pin.h"
#include "blocking_sock.h"
#include "blocking_udp.h"
#include "conn_table.h"
#include "datagram.h"
#include "iomux/engine.h"
#include "notifier.h"
#include "platform.h"
#include "socket_options.h"
#include "socket_util.h"
#include "stream.h"
#include "write_queue.h"

namespace iomux {

namespace blocking {
namespace {

// ---- the engine (Node's main thread) ----------------------------------------------------------

class BlockingEngine final : public Engine {
 public:
  BlockingEngine(std::shared_ptr<Hub> hub, const EngineConfig& config)
      : hub_(std::move(hub)), config_(config) {}

  ~BlockingEngine() override {
    for (int id = 0; id < table_.capacity(); ++id) {
      Slot* slot = table_.get(id);
      if (slot != nullptr && slot->sock) close_sock(id);
    }
    pending_.clear();
    // Nothing is posted for a closing socket, so this breaks the last Hub -> Sock references.
    std::lock_guard<std::mutex> lock(hub_->mu);
    for (const SockRef& s : hub_->ready) s->in_hub = false;
    hub_->ready.clear();
  }

  int wait_fd() const override { return hub_->notifier.fd(); }
  int broken() const override { return broken_; }

  int poll(EventSink* sink) override {
    table_.recycle();
    ++counters_.polls;
    if (broken_ != 0) return broken_;
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      // Other code may have closed the wait fd (as a buggy library might); its number may already
      // name another file, so it is checked without reading it first. Once lost it is abandoned
      // under the hub's lock (the threads signal it under that lock): never read, written or
      // closed again, and the engine fails over. Results the threads posted stay with their
      // sockets, which detach() hands over.
      if (Notifier::closed_elsewhere(hub_->notifier.verify()) ||
          Notifier::closed_elsewhere(hub_->notifier.drain())) {
        hub_->notifier.abandon();
        broken_ = -EBADF;
        return broken_;
      }
      hub_->signaled = false;
      for (SockRef& s : hub_->ready) {
        s->in_hub = false;
        if (!s->in_pending) {
          s->in_pending = true;
          pending_.push_back(std::move(s));
        }
      }
      hub_->ready.clear();
    }
    // Sockets are served in the order they reported; one that did not fit keeps its place.
    size_t i = 0;
    for (; i < pending_.size() && !sink->full(); ++i) {
      SockRef& s = pending_[i];
      bool more = !s->released && (s->listener   ? serve_listener(s, sink)
                                   : s->datagram ? serve_datagram(*s, sink, &counters_)
                                                 : serve_conn(s, sink));
      if (more) {
        keep_.push_back(std::move(s));
      } else {
        s->in_pending = false;
      }
    }
    for (; i < pending_.size(); ++i) keep_.push_back(std::move(pending_[i]));
    pending_.clear();
    pending_.swap(keep_);
    if (!pending_.empty()) hub_->kick();  // the glue polls again for the rest
    counters_.events += static_cast<uint64_t>(sink->count);
    return sink->count;
  }

  int listen(const ListenRequest& request) override {
    int fd = open_listener(request);
    if (fd < 0) return fd;
    // A listener blocks where closing can wake its accept thread (see accept_blocking()).
    int rc = platform::kShutdownWakesAccept ? set_blocking(fd, true) : 0;
    if (rc != 0) {
      close_fd(fd);
      return rc;
    }
    if (!hub_->reserve(kListenerSlots)) {
      close_fd(fd);
      return -EAGAIN;
    }
    SockRef s = std::make_shared<Sock>(hub_, fd, true);
    s->slots = kListenerSlots;
    s->attached = true;
    return attach_new(s, Role::kAcceptor);
  }

  int connect(const ConnectRequest& request) override {
    if (!hub_->reserve(kConnectionSlots)) return -EAGAIN;
    int fd = open_connecting(request);
    if (fd < 0) {
      hub_->unreserve(kConnectionSlots);
      return fd;
    }
    SockRef s = std::make_shared<Sock>(hub_, fd, false);
    s->slots = kConnectionSlots;
    s->attached = true;
    s->stream.connecting = true;
    return attach_new(s, Role::kReader);
  }

  int64_t write(int id, const iovec* bufs, int count, SharedPayload* shared) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr || slot->sock->listener || slot->sock->datagram) return -EBADF;
    const SockRef& s = slot->sock;
    std::unique_lock<std::mutex> lock(s->mu);
    if (s->write_err != 0 && !s->stream.shutdown_requested) return -s->write_err;
    bool started_queue = false;
    int64_t queued = s->stream.write(s->fd, bufs, count, &stream_counters_, &started_queue, shared);
    if (started_queue) {
      int rc = start_writer(s);
      if (rc != 0) {
        // No thread to send the queue: the connection fails as if the send had.
        s->write_err = -rc;
        schedule(s);
        return rc;
      }
    }
    return queued;
  }

  int set_reading(int id, bool reading) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr) return -EBADF;
    SockRef s = slot->sock;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      bool& paused = s->listener || s->datagram ? s->paused : s->stream.paused;
      if (paused == !reading) return 0;
      paused = !reading;
    }
    if (reading) {
      s->reader_cv.notify_all();
      schedule(s);  // deliver what was held while paused
    }
    return 0;
  }

  int shutdown(int id, ShutdownResult* result) override {
    *result = ShutdownResult::kPending;
    Sock* s = sock(id);
    if (s == nullptr || s->listener || s->datagram) return -EBADF;
    StreamFate fate;
    {
      // After the queue (or the connect completion), poll() finishes the half-close.
      std::lock_guard<std::mutex> lock(s->mu);
      fate = s->stream.request_shutdown(s->fd, result);
    }
    if (fate == StreamFate::kClose) close_sock(id);
    return 0;
  }

  int destroy(int id) override {
    if (sock(id) == nullptr) return -EBADF;
    close_sock(id);
    return 0;
  }

  int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) override {
    Sock* s = sock(id);
    if (s == nullptr) return -EBADF;
    return socket_address(s->fd, peer, out, len);
  }

  int socket_fd(int id) override {
    Sock* s = sock(id);
    return s == nullptr ? -EBADF : s->fd;
  }

  int udp_open(const UdpRequest& request) override {
    SockRef s;
    int rc = open_datagram_sock(hub_, request, &s);
    if (rc != 0) return rc;
    int id = table_.alloc();
    if (id < 0) return id;  // the Sock closes the fd and gives the slots back
    s->id = id;
    rc = start_datagram_threads(s);
    if (rc != 0) {
      table_.release(id);
      return rc;
    }
    table_.get(id)->sock = s;
    return id;
  }

  int udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                     DatagramBatchResult* result) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr || !slot->sock->datagram) return -EBADF;
    SockRef s = slot->sock;
    if (send_datagrams(*s, datagrams, count, &direct_written_, result)) schedule(s);
    counters_.writes_queued += static_cast<uint64_t>(result->queued);
    return 0;
  }

  const Counters& counters() const override {
    report_ = counters_;
    report_.bytes_written = direct_written_ + stream_counters_.bytes_written +
                            hub_->bytes_written.load(std::memory_order_relaxed);
    report_.writes_queued += stream_counters_.writes_queued;
    return report_;
  }

  // Runtime fallback away from this backend: see hand_over() (blocking_migrate.h).
  int detach(int id, DetachedSocket* out) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr) return -EBADF;
    SockRef s = slot->sock;
    int rc = hand_over(*s, out);
    if (rc != 0) return rc;  // the id stays until destroy() or engine close
    s->released = true;
    table_.release(id);
    return 0;
  }

  int adopt(DetachedSocket&& socket) override {
    if (!socket.listener || platform::kShutdownWakesAccept) {
      int rc = set_blocking(socket.fd, true);
      if (rc != 0) return rc;
    }
    int slots = socket.listener ? kListenerSlots : kConnectionSlots;
    if (!hub_->reserve(slots)) return -EAGAIN;
    SockRef s = std::make_shared<Sock>(hub_, socket.fd, socket.listener, socket.datagram);
    s->slots = slots;
    int id = table_.alloc();
    if (id < 0) {
      s->owns_fd = false;
      return id;
    }
    s->id = id;
    int rc = start_adopted(s, socket);
    if (rc != 0) {
      table_.release(id);  // the fd is the caller's again, untouched
      return rc;
    }
    table_.get(id)->sock = s;
    schedule(s);  // a pending drain or close may be due already
    return id;
  }

 private:
  struct Slot {
    bool in_use = false;
    SockRef sock;
  };

  Sock* sock(int id) {
    Slot* slot = table_.get(id);
    return slot == nullptr ? nullptr : slot->sock.get();
  }

  // Gives a new listener or connecting socket an id and starts its thread.
  int attach_new(const SockRef& s, Role role) {
    int id = table_.alloc();
    if (id < 0) return id;  // the Sock closes the fd and gives the slots back
    s->id = id;
    int rc;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      rc = spawn_locked(s, role);
    }
    if (rc != 0) {
      table_.release(id);
      return rc;
    }
    table_.get(id)->sock = s;
    return id;
  }

  void schedule(const SockRef& s) {
    if (!s->in_pending) {
      s->in_pending = true;
      pending_.push_back(s);
    }
    hub_->kick();
  }

  void close_sock(int id) {
    Slot* slot = table_.get(id);
    SockRef s = std::move(slot->sock);
    stop(*s);
    if (s->listener) {
      std::deque<Accepted> accepted;
      {
        std::lock_guard<std::mutex> lock(s->mu);
        accepted.swap(s->accepted);
      }
      for (Accepted& a : accepted) {
        if (a.conn) stop(*a.conn);
      }
    }
    s->released = true;
    ++counters_.closed;
    table_.release(id);
  }

  // Delivers accepted connections. Returns true when some did not fit in this batch.
  bool serve_listener(const SockRef& l, EventSink* sink) {
    int id = l->id;
    bool more = false;
    {
      std::lock_guard<std::mutex> lock(l->mu);
      if (l->paused) return false;  // resuming schedules the listener again
      while (!l->accepted.empty()) {
        if (sink->full()) {
          more = true;
          break;
        }
        Accepted a = std::move(l->accepted.front());
        l->accepted.pop_front();
        if (!a.conn) {
          ++counters_.accept_errors;
          sink->push(kEventAcceptError, id, a.err);
          continue;
        }
        int conn_id = table_.alloc();
        if (conn_id < 0) {
          stop(*a.conn);
          ++counters_.accept_errors;
          sink->push(kEventAcceptError, id, -conn_id);
          continue;
        }
        a.conn->id = conn_id;
        {
          std::lock_guard<std::mutex> conn_lock(a.conn->mu);
          a.conn->attached = true;
        }
        a.conn->reader_cv.notify_one();
        table_.get(conn_id)->sock = std::move(a.conn);
        ++counters_.accepted;
        sink->push(kEventAccept, conn_id, id);
      }
    }
    l->reader_cv.notify_one();  // room for more
    return more;
  }

  // Delivers what a connection's threads reported, in order, through the stream core. Returns
  // true when something did not fit in this batch.
  bool serve_conn(const SockRef& s, EventSink* sink) {
    int id = s->id;
    std::unique_lock<std::mutex> lock(s->mu);
    StreamState& stream = s->stream;
    if (s->connect_done && !s->connect_reported) {
      if (sink->full()) return true;
      s->connect_reported = true;
      if (s->connect_err != 0) {
        int err = s->connect_err;
        lock.unlock();
        close_sock(id);
        sink->push(kEventConnect, id, err);
        return false;
      }
      sink->push(kEventConnect, id, 0);
      if (stream.connected(s->fd)) s->writer_cv.notify_one();  // the queue can go out now
      // What the reader already has goes out in a later batch, as a readiness engine reads only
      // after the connect completed: the application attaches its handlers once connect()
      // resolved, and bytes in this batch would reach a connection nobody listens to yet.
      return true;
    }
    if (stream.connecting) return false;

    // Write side first, as a readiness engine flushes before it reads.
    if (s->write_err != 0) {
      if (sink->full()) return true;
      // After a reset the reader usually sees ECONNRESET and the writer then EPIPE: report the
      // cause.
      int err = stream.err_pending != 0 ? stream.err_pending : s->write_err;
      (void)reset_on_close(s->fd);  // the peer must not take the cut stream for a whole one
      lock.unlock();
      close_sock(id);
      StreamState::fail(id, err, sink);
      return false;
    }
    if (stream.queue.empty() &&
        (stream.drain_pending || (stream.shutdown_requested && !stream.write_shut))) {
      if (sink->full()) return true;  // room for DRAIN and CLOSE
      if (finish(s, stream.queue_flushed(s->fd, id, sink), &lock)) return false;
    }

    // Read side: held bytes, then how the stream ended (the core sends that in a later batch than
    // the last bytes, so JS can still pause in between).
    if (stream.paused || !stream.input_held()) return false;
    if (sink->full()) return true;  // room for DATA, END and CLOSE
    size_t slab_before = sink->slab_used;
    bool more = false;
    StreamFate fate = stream.deliver(id, sink, &more);
    counters_.bytes_read += sink->slab_used - slab_before;
    s->reader_cv.notify_one();  // room in the inbox
    if (finish(s, fate, &lock)) return false;
    return more;
  }

  // After a stream transition: kClose means the stream core finished it (its CLOSE is in the
  // batch), so the engine closes it. Returns whether it did. Called with s->mu held via *lock.
  bool finish(const SockRef& s, StreamFate fate, std::unique_lock<std::mutex>* lock) {
    if (fate != StreamFate::kClose) return false;
    lock->unlock();
    close_sock(s->id);
    return true;
  }

  ConnTable<Slot> table_;
  std::shared_ptr<Hub> hub_;
  EngineConfig config_;
  mutable Counters counters_;
  uint64_t direct_written_ = 0;   // UDP sends made on this thread
  Counters stream_counters_;      // what the stream core counts (TCP writes made on this thread)
  mutable Counters report_;       // counters() returns this
  std::vector<SockRef> pending_;  // sockets with something to deliver, in report order
  std::vector<SockRef> keep_;     // scratch for poll()
  int broken_ = 0;                // -EBADF once the wait fd was lost to other code
};

}  // namespace
}  // namespace blocking

namespace backend {

const char* const kName = "blocking_io";

std::string probe(int simulated_errno) { return probe_notifier(kName, simulated_errno, nullptr); }

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  // Threads outlive the engine for a moment: the addon's code must outlive a worker's unload.
  int rc = pin_addon_code();
  if (rc != 0) {
    *error = rc;
    return nullptr;
  }
  // Chosen (and its handler installed) before any thread starts, since each thread unblocks it.
  (void)interrupt_signal();
  auto hub = std::make_shared<blocking::Hub>();
  rc = hub->notifier.open();
  if (rc != 0) {
    *error = rc;
    return nullptr;
  }
  hub->read_chunk = config.read_chunk;
  // Range-checked in TypeScript (tuning.ts: blockingMaxThreads 1..1048576, blockingStackKb
  // 16..1048576), so the values fit here.
  hub->max_threads =
      static_cast<int>(config.tune("blockingMaxThreads", blocking::kDefaultMaxThreads));
  hub->stack_bytes =
      static_cast<size_t>(config.tune("blockingStackKb", blocking::kDefaultStackKb)) * 1024;
  int64_t spawn_budget = config.tune("faultThreadStartsBefore", -1);
  hub->spawn_limited = spawn_budget >= 0;
  hub->spawn_budget = spawn_budget;
  (void)hub->spare_fd.open();  // without a spare the engine runs on, only without shedding
  return std::make_unique<blocking::BlockingEngine>(std::move(hub), config);
}

}  // namespace backend

}  // namespace iomux
