// blocking_io: portable blocking sockets on native threads, the last-resort backend. It needs no
// readiness or completion API at all, only socket calls that block.
//
// Threads (each with a small stack, the blockingStackKb tuning knob, IOMUX_BLOCKING_STACK_KB):
// - one accept thread per listener, blocked in accept();
// - one reader thread per connection, blocked in recv(); for an outgoing connection it first waits
//   for the non-blocking connect() the main thread started to complete;
// - one writer thread per connection, started the first time a write cannot go out at once, then
//   blocked in sendmsg() on the queued bytes (or parked on a condvar while the queue is empty);
// - per UDP socket, a reader thread blocked in recvmmsg(MSG_WAITFORONE), which hands whole batches
//   of datagrams over, and a writer thread (started with it) that sends the outbox with blocking
//   sendmmsg(). udp_send_batch itself sends with MSG_DONTWAIT and queues only what the kernel
//   refuses.
// The number of threads is bounded (blockingMaxThreads, IOMUX_BLOCKING_MAX_THREADS): a connection
// or UDP socket reserves two slots, a listener one. Past the bound an accept reports
// kEventAcceptError with EAGAIN and a connect returns -EAGAIN; nothing waits.
//
// Every socket is a shared Sock object its threads hold on to, so an id the engine releases never
// leaves a thread with a dangling pointer, and a late result for it is simply dropped (the Sock is
// marked released). Threads hand results over under the Sock's mutex and post the Sock to the
// Hub's ready list, signalling an eventfd (the wait fd). poll() on Node's main thread drains that
// list into the batch. Reads are held per connection in order (at most about two read chunks;
// then the reader stops reading, so the kernel and the peer feel the backpressure), and pausing
// stops both delivery and the reader.
//
// Node's main thread never blocks: write() sends with MSG_DONTWAIT and queues the rest; closing
// marks the Sock, wakes its threads and shutdown()s the fd, which makes a blocked recv, send,
// accept or connect return (on Linux). The fd itself is closed by whoever drops the last
// reference, after its threads are gone, so an fd number is never reused under a thread's feet.
// detach() (runtime fallback away from this backend) cannot use shutdown(): it interrupts the
// threads with a signal instead and waits the few microseconds they need to return. Datagrams a
// UDP reader had taken from the kernel but not delivered yet are dropped by a detach (the glue has
// no way to hand received datagrams to the next engine); its queued sends travel with it.
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blocking_interrupt.h"
#include "blocking_pin.h"
#include "blocking_sock.h"
#include "conn_table.h"
#include "datagram.h"
#include "iomux/engine.h"
#include "notifier.h"
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

  int poll(EventSink* sink) override {
    table_.recycle();
    ++counters_.polls;
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      hub_->notifier.drain();
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
                                   : s->datagram ? serve_datagram(s, sink)
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
#ifdef __linux__
    int rc = set_blocking(fd, true);
    if (rc != 0) {
      close_fd(fd);
      return rc;
    }
#endif
    if (!hub_->reserve(kListenerSlots)) {
      close_fd(fd);
      return -EAGAIN;
    }
    SockRef s = std::make_shared<Sock>(hub_, fd, true);
    s->slots = kListenerSlots;
    s->attached = true;
    return attach_new(s, Role::kAcceptor);
  }

  int connect(const sockaddr_storage& addr, socklen_t addr_len) override {
    if (!hub_->reserve(kConnectionSlots)) return -EAGAIN;
    int fd = open_connecting(addr, addr_len);
    if (fd < 0) {
      hub_->unreserve(kConnectionSlots);
      return fd;
    }
    SockRef s = std::make_shared<Sock>(hub_, fd, false);
    s->slots = kConnectionSlots;
    s->attached = true;
    s->connecting = true;
    return attach_new(s, Role::kReader);
  }

  int64_t write(int id, const iovec* bufs, int count) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr || slot->sock->listener || slot->sock->datagram) return -EBADF;
    const SockRef& s = slot->sock;
    std::unique_lock<std::mutex> lock(s->mu);
    if (s->shutdown_requested) return -EPIPE;
    if (s->write_err != 0) return -s->write_err;
    size_t sent = 0;
    if (!s->connecting && s->queue.empty()) {
      // Try the send at once, like uv_try_write; only the rest is copied into the queue.
      msghdr msg{};
      msg.msg_iov = const_cast<iovec*>(bufs);
      msg.msg_iovlen = static_cast<size_t>(count < kMaxIov ? count : kMaxIov);
      ssize_t n;
      do {
        n = ::sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
      if (n > 0) {
        sent = static_cast<size_t>(n);
        direct_written_ += sent;
      }
    }
    bool was_empty = s->queue.empty();
    if (!s->queue.append(bufs, count, sent)) return -ENOMEM;
    if (s->queue.empty()) return 0;
    ++counters_.writes_queued;
    s->drain_pending = true;
    if (was_empty) {
      int rc = start_writer(s);
      if (rc != 0) {
        // No thread to send the queue: the connection fails as if the send had.
        s->write_err = -rc;
        schedule(s);
        return rc;
      }
    }
    return static_cast<int64_t>(s->queue.size());
  }

  int set_reading(int id, bool reading) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr) return -EBADF;
    SockRef s = slot->sock;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->paused == !reading) return 0;
      s->paused = !reading;
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
    {
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->shutdown_requested) return 0;
      s->shutdown_requested = true;
      // The writer (or the connect completion) finishes the half-close after the queue.
      if (s->connecting || !s->queue.empty()) return 0;
      if (!s->write_shut) {
        (void)::shutdown(s->fd, SHUT_WR);
        s->write_shut = true;
      }
    }
    if (!s->end_delivered) return 0;
    close_sock(id);
    *result = ShutdownResult::kClosed;
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
    if (!hub_->reserve(kConnectionSlots)) return -EAGAIN;
    int fd = open_datagram(request);
    int rc = fd < 0 ? fd : set_blocking(fd, true);
    if (rc != 0) {
      if (fd >= 0) close_fd(fd);
      hub_->unreserve(kConnectionSlots);
      return rc;
    }
    SockRef s = std::make_shared<Sock>(hub_, fd, false, true);
    s->slots = kConnectionSlots;
    s->attached = true;
    s->max_datagram = request.max_datagram;
    s->outbox.read_fault_switch();
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
    const SockRef& s = slot->sock;
    std::unique_lock<std::mutex> lock(s->mu);
    s->outbox.send_batch(s->fd, datagrams, count, &direct_written_, result);
    if (result->queued == 0) return 0;
    counters_.writes_queued += static_cast<uint64_t>(result->queued);
    if (s->outbox.queues_all()) {
      s->flush_held = true;  // fault injection: the writer goes on at the next poll
      lock.unlock();
      schedule(s);
    } else {
      s->writer_cv.notify_one();
    }
    return 0;
  }

  const Counters& counters() const override {
    counters_.bytes_written = direct_written_ + hub_->bytes_written.load(std::memory_order_relaxed);
    return counters_;
  }

  // Hands a socket to another engine. Its threads are interrupted out of their blocking calls
  // (see interrupt_signal) and waited for; what they completed is accounted for: bytes read go out
  // as undelivered, bytes sent are gone from the queue, an accepted connection nobody saw yet is
  // closed (its peer sees a reset). The wait is short: the threads only have to return from a
  // system call. A socket with an error not yet delivered is not handed over: its -errno is
  // returned (the id stays until destroy() or engine close).
  int detach(int id, DetachedSocket* out) override {
    Slot* slot = table_.get(id);
    if (slot == nullptr) return -EBADF;
    SockRef s = slot->sock;
    std::deque<Accepted> accepted;
    {
      std::unique_lock<std::mutex> lock(s->mu);
      if ((s->reader_running || s->writer_running) && !interrupt_usable()) return -ENOTSUP;
      s->detaching = true;
      s->reader_cv.notify_all();
      s->writer_cv.notify_all();
      int sig = interrupt_signal();
      while (s->reader_running || s->writer_running) {
        // A thread clears its flag under this lock before it ends, so its id is still valid. A
        // signal that lands just before the thread enters its call is lost; the next one is not.
        if (s->reader_running) pthread_kill(s->reader_thread, sig);
        if (s->writer_running) pthread_kill(s->writer_thread, sig);
        s->exit_cv.wait_for(lock, std::chrono::milliseconds(1));
      }
      int err = 0;
      if (s->connect_done && !s->connect_reported && s->connect_err != 0) {
        err = s->connect_err;
      } else if (s->read_err != 0 || s->write_err != 0) {
        err = s->read_err != 0 ? s->read_err : s->write_err;
      }
      // Other engines expect a non-blocking fd.
      if (err == 0) err = -set_blocking(s->fd, false);
      if (err != 0) return -err;
      out->fd = s->fd;
      out->listener = s->listener;
      out->paused = s->paused;
      if (s->datagram) {
        out->datagram = true;
        out->max_datagram = s->max_datagram;
        s->outbox.save(&out->unsent);
      } else if (!s->listener) {
        out->connecting = s->connecting || (s->connect_done && !s->connect_reported);
        out->read_eof = s->end_delivered;
        out->shutdown_requested = s->shutdown_requested;
        out->write_shut = s->write_shut;
        out->drain_pending = s->drain_pending;
        out->eof_undelivered = s->eof && !s->end_delivered;
        s->queue.copy_to(&out->unsent);
        out->undelivered.reserve(s->inbox_bytes);
        for (const Chunk& c : s->inbox) {
          out->undelivered.insert(out->undelivered.end(), c.data.get() + c.offset,
                                  c.data.get() + c.size);
        }
      }
      accepted.swap(s->accepted);
      s->owns_fd = false;
      s->closing = true;
    }
    for (Accepted& a : accepted) {
      if (a.conn) stop(*a.conn);
    }
    s->released = true;
    table_.release(id);
    return 0;
  }

  int adopt(DetachedSocket&& socket) override {
#ifndef __linux__
    if (!socket.listener)
#endif
    {
      int rc = set_blocking(socket.fd, true);
      if (rc != 0) return rc;
    }
    int slots = socket.listener ? kListenerSlots : kConnectionSlots;
    if (!hub_->reserve(slots)) return -EAGAIN;
    SockRef s = std::make_shared<Sock>(hub_, socket.fd, socket.listener, socket.datagram);
    s->slots = slots;
    s->paused = socket.paused;  // not attached yet: the threads wait until all of them started
    int id = table_.alloc();
    if (id < 0) {
      s->owns_fd = false;
      return id;
    }
    s->id = id;
    int rc = 0;
    if (socket.listener) {
      std::lock_guard<std::mutex> lock(s->mu);
      rc = spawn_locked(s, Role::kAcceptor);
    } else if (socket.datagram) {
      s->max_datagram = socket.max_datagram;
      rc = s->outbox.restore(socket.unsent);
      if (rc == 0) rc = start_datagram_threads(s);
    } else {
      s->connecting = socket.connecting;
      s->end_delivered = socket.read_eof;
      s->eof = socket.read_eof;
      s->shutdown_requested = socket.shutdown_requested;
      s->write_shut = socket.write_shut;
      s->drain_pending = socket.drain_pending;
      if (!s->queue.append(socket.unsent.data(), socket.unsent.size())) rc = -ENOMEM;
      if (rc == 0 && (!s->queue.empty() || (s->shutdown_requested && !s->write_shut))) {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->connecting || !s->queue.empty()) {
          rc = start_writer(s);
        } else {
          (void)::shutdown(s->fd, SHUT_WR);
          s->write_shut = true;
        }
      }
      // The reader last: once it runs it may consume bytes, so nothing may fail after it.
      if (rc == 0 && !socket.read_eof) {
        hub_->delay_refused_start();
        std::lock_guard<std::mutex> lock(s->mu);
        rc = spawn_locked(s, Role::kReader);
      }
    }
    if (rc != 0) {
      abandon_unattached(*s);
      table_.release(id);
      return rc;
    }
    {
      std::lock_guard<std::mutex> lock(s->mu);
      s->attached = true;
    }
    s->reader_cv.notify_all();
    s->writer_cv.notify_all();
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

  // A failed adopt() leaves the fd to the caller, who closes it at once: the threads already
  // started must be gone first. They never touched the fd (they wait for `attached`, which is
  // never set), so they only have to return from a condvar wait: this wait is short.
  static void abandon_unattached(Sock& s) {
    std::unique_lock<std::mutex> lock(s.mu);
    s.owns_fd = false;
    s.closing = true;
    s.reader_cv.notify_all();
    s.writer_cv.notify_all();
    s.exit_cv.wait(lock, [&] { return !s.reader_running && !s.writer_running; });
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

  // A UDP socket's writer, then its reader: once the reader runs it may consume datagrams, so
  // nothing may fail after it. On failure nothing is left running.
  static int start_datagram_threads(const SockRef& s) {
    std::lock_guard<std::mutex> lock(s->mu);
    int rc = spawn_locked(s, Role::kWriter);
    if (rc != 0) return rc;
    s->writer_started = true;
    rc = spawn_locked(s, Role::kReader);
    if (rc != 0) {
      s->closing = true;  // the writer is parked on its condvar (nothing was queued for it yet)
      s->writer_cv.notify_all();
    }
    return rc;
  }

  // Starts the writer thread if it is not running yet, else wakes it. Called with s->mu held.
  static int start_writer(const SockRef& s) {
    if (s->writer_started) {
      s->writer_cv.notify_one();
      return 0;
    }
    int rc = spawn_locked(s, Role::kWriter);
    if (rc == 0) s->writer_started = true;
    return rc;
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

  // Delivers a UDP socket's send errors, then its datagrams, in order. Returns true when something
  // did not fit in this batch.
  bool serve_datagram(const SockRef& s, EventSink* sink) {
    int id = s->id;
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->flush_held) {
      s->flush_held = false;
      s->writer_cv.notify_one();
    }
    while (!s->send_errors.empty()) {
      if (sink->full()) return true;
      sink->push(kEventSendError, id, s->send_errors.front());
      s->send_errors.pop_front();
    }
    if (s->paused) return false;  // resuming schedules the socket again
    bool consumed = false;
    bool more = false;
    while (!s->datagrams.empty()) {
      DatagramBatch& batch = s->datagrams.front();
      const DatagramRecord& record = batch.records[batch.next];
      if (!deliver_record(batch.data.get(), record, id, sink)) {
        more = true;
        break;
      }
      counters_.bytes_read += record.length;
      s->datagram_bytes -= record_size(record);
      consumed = true;
      if (++batch.next == batch.records.size()) s->datagrams.pop_front();
    }
    if (consumed) s->reader_cv.notify_one();
    return more;
  }

  // Delivers what a connection's threads reported, in order. Returns true when something did not
  // fit in this batch.
  bool serve_conn(const SockRef& s, EventSink* sink) {
    int id = s->id;
    std::unique_lock<std::mutex> lock(s->mu);
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
      if (s->shutdown_requested && s->queue.empty() && !s->write_shut) {
        (void)::shutdown(s->fd, SHUT_WR);
        s->write_shut = true;
      }
    }
    if (s->connecting) return false;

    // Write side first, as a readiness engine flushes before it reads.
    if (s->write_err != 0) {
      if (sink->full()) return true;
      // After a reset the reader usually sees ECONNRESET and the writer then EPIPE: report the
      // cause.
      int err = s->read_err != 0 ? s->read_err : s->write_err;
      lock.unlock();
      close_sock(id);
      sink->push(kEventClose, id, err);
      return false;
    }
    if (s->drain_pending && s->queue.empty()) {
      if (sink->full()) return true;
      s->drain_pending = false;
      sink->push(kEventDrain, id);
    }
    if (s->write_shut && s->end_delivered) {
      if (sink->full()) return true;
      lock.unlock();
      close_sock(id);
      sink->push(kEventClose, id, 0);
      return false;
    }

    // Read side: held data first, then how the stream ended. Nothing while paused.
    if (s->paused) return false;
    bool consumed = false;
    bool more = false;
    while (!s->inbox.empty()) {
      if (sink->full()) {
        more = true;
        break;
      }
      Chunk& c = s->inbox.front();
      size_t left = c.size - c.offset;
      size_t room = sink->slab_capacity - sink->slab_used;
      size_t take = left < room ? left : room;
      if (take < left && take < kMinRead) {
        sink->slab_exhausted = true;  // ends this batch; the rest waits for the next one
        more = true;
        break;
      }
      std::memcpy(sink->slab + sink->slab_used, c.data.get() + c.offset, take);
      sink->push(kEventData, id, static_cast<int32_t>(sink->slab_used), static_cast<int32_t>(take));
      sink->slab_used += take;
      counters_.bytes_read += take;
      c.offset += take;
      s->inbox_bytes -= take;
      if (c.offset == c.size) s->inbox.pop_front();
      consumed = true;
    }
    if (consumed) s->reader_cv.notify_one();
    if (more) return true;
    // How the stream ended goes out in a later batch than its last data, as a readiness engine
    // learns it only from the read after a short one: JS can still pause in between.
    if (consumed && (s->eof || s->read_err != 0)) return true;
    if (s->eof && !s->end_delivered) {
      if (sink->full()) return true;
      s->end_delivered = true;
      sink->push(kEventEnd, id);
      if (s->write_shut) {
        if (sink->full()) return true;
        lock.unlock();
        close_sock(id);
        sink->push(kEventClose, id, 0);
      }
      return false;
    }
    if (s->read_err != 0) {
      if (sink->full()) return true;
      int err = s->read_err;
      lock.unlock();
      close_sock(id);
      sink->push(kEventClose, id, err);
    }
    return false;
  }

  ConnTable<Slot> table_;
  std::shared_ptr<Hub> hub_;
  EngineConfig config_;
  mutable Counters counters_;
  uint64_t direct_written_ = 0;
  std::vector<SockRef> pending_;  // sockets with something to deliver, in report order
  std::vector<SockRef> keep_;     // scratch for poll()
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
