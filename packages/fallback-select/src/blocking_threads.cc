// The threads of blocking_io's sockets: the blocking socket calls and the reader, writer, accept
// and UDP thread bodies. A thread only ever touches its own Sock (under its mutex) and the Hub;
// results reach Node's main thread through Hub::post.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include "blocking_interrupt.h"
#include "blocking_sock.h"
#include "blocking_udp.h"
#include "datagram.h"
#include "notifier.h"
#include "platform.h"
#include "socket_util.h"
#include "thread_util.h"

namespace iomux {
namespace blocking {

void Hub::post(const SockRef& s) {
  std::lock_guard<std::mutex> lock(mu);
  if (!s->in_hub) {
    s->in_hub = true;
    ready.push_back(s);
  }
  kick_locked();
}

// ---- blocking socket calls (worker threads) -------------------------------------------------

bool wait_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, kWaitSliceMs) >= 0 || errno != EINTR;
}

namespace {

// The blocking calls below return -EINTR when detach() interrupts them; the caller looks at the
// Sock's flags and calls again if it is not being stopped.
ssize_t recv_blocking(int fd, uint8_t* buf, size_t len) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, len, 0);
    if (n >= 0) return n;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_ready(fd, POLLIN)) continue;
    return -errno;
  }
}

// Never blocks longer than a wait slice: closing a connection leaves its write side open (see
// stop()), so nothing else would wake a send that waits for a peer that does not read. -EAGAIN
// after a slice without room; the writer then looks at the Sock's flags and calls again.
ssize_t send_sliced(int fd, const iovec* bufs, int count) {
  ssize_t n = send_now(fd, bufs, count);
  if (n >= 0 || (n != -EAGAIN && n != -EWOULDBLOCK)) return n;
  return wait_ready(fd, POLLOUT) ? -EAGAIN : -EINTR;
}

bool is_stopped(Sock& s) {
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stopped();
}

// Accepts one connection as a blocking, close-on-exec socket with TCP_NODELAY. -errno on failure,
// -ECANCELED when the listener is closing.
int accept_blocking(Sock& l) {
  for (;;) {
    if (!platform::kShutdownWakesAccept) {
      // shutdown() would not wake a blocked accept() here: the listener stays non-blocking and
      // the wait happens in bounded slices.
      pollfd p{l.fd, POLLIN, 0};
      int ready = ::poll(&p, 1, kWaitSliceMs);
      if (is_stopped(l)) return -ECANCELED;
      if (ready < 0 && errno != EINTR) return -errno;
      if (ready <= 0) continue;
    }
    // Where shutdown() wakes it, this blocks: closing the listener shutdown()s it, which makes
    // accept() fail with EINVAL.
    int fd = platform::accept_socket(l.fd, /*blocking=*/true);
    if (fd == -EAGAIN || fd == -EWOULDBLOCK) continue;  // the peer left between poll and accept
    if (fd >= 0) {
      int one = 1;
      (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
  }
}

// Out of fds: the pending peer would make every accept fail at once. Give up the reserve fd,
// accept the peer and close it (it sees a reset), then take the reserve back, as libuv does.
void shed_connection(Hub& hub, int listen_fd) {
  std::lock_guard<std::mutex> lock(hub.reserve_mu);
  (void)hub.spare_fd.shed(listen_fd);  // the accept thread backs off either way
}

// Waits for the non-blocking connect the main thread started. Returns 0 or a positive errno.
int await_connect(Sock& s) {
  for (;;) {
    pollfd p{s.fd, POLLOUT, 0};
    int n = ::poll(&p, 1, kWaitSliceMs);
    if (n > 0) break;
    if (n < 0 && errno != EINTR) return errno;
    if (is_stopped(s)) return ECANCELED;
  }
  int err = pending_error(s.fd);
  if (err == 0) err = -set_blocking(s.fd, true);
  return err;
}

// ---- threads ----------------------------------------------------------------------------------

struct ThreadArg {
  SockRef sock;
  Role role;
};

void run_reader(const SockRef& s);
void run_writer(const SockRef& s);
void run_acceptor(const SockRef& l);

void* thread_main(void* raw) {
  std::unique_ptr<ThreadArg> arg(static_cast<ThreadArg*>(raw));
  unblock_interrupt();  // detach() interrupts blocking calls with it
  const SockRef& s = arg->sock;
  switch (arg->role) {
    case Role::kReader:
      if (s->datagram) {
        run_datagram_reader(s);
      } else {
        run_reader(s);
      }
      break;
    case Role::kWriter:
      if (s->datagram) {
        run_datagram_writer(s);
      } else {
        run_writer(s);
      }
      break;
    case Role::kAcceptor:
      run_acceptor(s);
      break;
  }
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (arg->role == Role::kWriter) {
      s->writer_running = false;
    } else {
      s->reader_running = false;
    }
  }
  s->exit_cv.notify_all();
  return nullptr;
}

}  // namespace

int spawn_locked(const SockRef& s, Role role) {
  if (!s->hub->spawn_allowed()) return -EAGAIN;
  auto* arg = new (std::nothrow) ThreadArg{s, role};
  if (arg == nullptr) return -ENOMEM;
  pthread_t thread;
  int rc = start_thread(&thread_main, arg, s->hub->stack_bytes, true, &thread);
  if (rc != 0) {
    delete arg;
    return rc;
  }
  if (role == Role::kWriter) {
    s->writer_thread = thread;
    s->writer_running = true;
  } else {
    s->reader_thread = thread;
    s->reader_running = true;
  }
  return 0;
}

namespace {

// A connection's reader: first the connect completion (for an outgoing one), then recv() into
// the stream's inbox, in order. What the bytes, the EOF or the error mean for the stream is
// decided on the main thread by the stream core (StreamState::deliver); this thread only keeps
// the inbox to about one read chunk, so the kernel and the peer feel the backpressure.
void run_reader(const SockRef& s) {
  Hub& hub = *s->hub;
  std::unique_lock<std::mutex> lock(s->mu);
  s->reader_cv.wait(lock, [&] { return s->stopped() || s->attached; });
  if (s->stopped()) return;
  if (s->stream.connecting) {
    lock.unlock();
    int err = await_connect(*s);
    lock.lock();
    if (s->stopped()) return;
    s->connect_done = true;  // the main thread reports it and tells the stream (connected())
    s->connect_err = err;
    hub.post(s);
    if (err != 0) return;
  }
  const size_t chunk = hub.read_chunk;
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[chunk]);
  for (;;) {
    s->reader_cv.wait(lock, [&] {
      return s->stopped() || (!s->stream.paused && s->stream.inbox.size() < chunk);
    });
    if (s->stopped()) return;
    lock.unlock();
    ssize_t n = buf ? recv_blocking(s->fd, buf.get(), chunk) : -ENOMEM;
    lock.lock();
    if (s->closing) {
      if (n > 0) s->input_dropped = true;  // the close must reset the peer (see ~Sock)
      return;
    }
    if (n > 0) {
      // Kept even when detaching: detach() hands it over as undelivered.
      if (!s->stream.inbox.append(buf.get(), static_cast<size_t>(n))) n = -ENOMEM;
    }
    if (n > 0) {
      hub.post(s);
      continue;
    }
    if (n == -EINTR) continue;
    if (n == 0) {
      s->stream.eof_pending = true;
    } else {
      s->stream.err_pending = static_cast<int>(-n);
    }
    hub.post(s);
    return;
  }
}

// A connection's writer, started the first time a write could not go out at once: sends the
// stream's queue with blocking sendmsg(). The main thread then finishes what an empty queue means
// (DRAIN, the FIN of a requested shutdown) through StreamState::queue_flushed.
void run_writer(const SockRef& s) {
  Hub& hub = *s->hub;
  iovec iov[kStreamMaxIov];
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    s->writer_cv.wait(lock, [&] {
      return s->stopped() || (s->attached && !s->stream.connecting && !s->stream.queue.empty());
    });
    if (s->stopped()) return;
    // The main thread only appends while this runs (the stream core sends itself only into an
    // empty queue), so the gathered bytes stay put.
    int count = s->stream.gather(iov, kStreamMaxIov);
    lock.unlock();
    ssize_t n = send_sliced(s->fd, iov, count);
    lock.lock();
    if (s->closing) return;
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n < 0) {
      s->write_err = static_cast<int>(-n);
      hub.post(s);
      return;
    }
    Counters sent;
    s->stream.sent(static_cast<size_t>(n), &sent);
    hub.bytes_written.fetch_add(sent.bytes_written, std::memory_order_relaxed);
    if (s->stream.queue.empty()) hub.post(s);  // drain, and maybe the FIN of a shutdown
  }
}

}  // namespace

int start_writer(const SockRef& s) {
  if (s->writer_started) {
    s->writer_cv.notify_one();
    return 0;
  }
  int rc = spawn_locked(s, Role::kWriter);
  if (rc == 0) s->writer_started = true;
  return rc;
}

void stop(Sock& s) {
  const bool stream = !s.listener && !s.datagram;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.closing = true;
    // A writer leaves its send within a wait slice anyway; the interrupt makes that at once. Sent
    // under the lock: the thread clears writer_running under it before it ends, so the id is
    // valid. (A signal that lands just before the call is lost; the slice bounds the wait.)
    if (stream && s.writer_running && interrupt_usable()) {
      (void)pthread_kill(s.writer_thread, interrupt_signal());
    }
  }
  s.reader_cv.notify_all();
  s.writer_cv.notify_all();
  // A connection's write side is not shut: a FIN now would tell the peer the stream ended cleanly
  // even when its input is thrown away. close() (in ~Sock, once the threads are gone) sends what a
  // plain close sends, RST when input is unread. SHUT_RD wakes a reader blocked in recv() (and a
  // connect still in progress); listeners and UDP sockets have no FIN to send.
  (void)::shutdown(s.fd, stream ? SHUT_RD : SHUT_RDWR);
}

namespace {

// A connection for an accepted fd, its reader thread started (it waits until the connection is
// attached to an id). Null with *err set when out of thread slots (EAGAIN) or memory.
SockRef open_accepted(const std::shared_ptr<Hub>& hub, int fd, int* err) {
  if (!hub->reserve(kConnectionSlots)) {
    close_fd(fd);
    *err = EAGAIN;
    return nullptr;
  }
  SockRef conn = std::make_shared<Sock>(hub, fd, false);
  conn->slots = kConnectionSlots;
  int rc;
  {
    std::lock_guard<std::mutex> lock(conn->mu);
    rc = spawn_locked(conn, Role::kReader);
  }
  if (rc != 0) {
    *err = -rc;
    return nullptr;  // the Sock closes the fd and gives the slots back
  }
  return conn;
}

void run_acceptor(const SockRef& l) {
  Hub& hub = *l->hub;
  std::unique_lock<std::mutex> lock(l->mu);
  for (;;) {
    l->reader_cv.wait(lock, [&] {
      return l->stopped() || (l->attached && !l->paused && l->accepted.size() < kAcceptAhead);
    });
    if (l->stopped()) return;
    lock.unlock();
    int fd = accept_blocking(*l);
    SockRef conn;
    int err = 0;
    if (fd >= 0) {
      conn = open_accepted(l->hub, fd, &err);
    } else {
      err = -fd;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
        lock.lock();
        continue;
      }
      if (err == EMFILE || err == ENFILE) shed_connection(hub, l->fd);
    }
    lock.lock();
    if (l->stopped()) {
      if (conn) stop(*conn);  // nobody will take it: the peer sees a reset
      return;
    }
    l->accepted.push_back(Accepted{std::move(conn), err});
    hub.post(l);
    if (fd < 0) {
      l->reader_cv.wait_for(lock, std::chrono::milliseconds(kAcceptBackoffMs),
                            [&] { return l->stopped(); });
    }
  }
}
}  // namespace

}  // namespace blocking
}  // namespace iomux
