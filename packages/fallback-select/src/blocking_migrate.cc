#include "blocking_migrate.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <deque>
#include <mutex>

#include "blocking_interrupt.h"
#include "blocking_udp.h"
#include "notifier.h"

namespace iomux {
namespace blocking {

namespace {

// A failed adopt() leaves the fd to the caller, who closes it at once: the threads already
// started must be gone first. They never touched the fd (they wait for `attached`, which is
// never set), so they only have to return from a condvar wait: this wait is short.
void abandon_unattached(Sock& s) {
  std::unique_lock<std::mutex> lock(s.mu);
  s.owns_fd = false;
  s.closing = true;
  s.reader_cv.notify_all();
  s.writer_cv.notify_all();
  s.exit_cv.wait(lock, [&] { return !s.reader_running && !s.writer_running; });
}

}  // namespace

int hand_over(Sock& s, DetachedSocket* out) {
  std::deque<Accepted> accepted;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    if ((s.reader_running || s.writer_running) && !interrupt_usable()) return -ENOTSUP;
    s.detaching = true;
    s.reader_cv.notify_all();
    s.writer_cv.notify_all();
    int sig = interrupt_signal();
    while (s.reader_running || s.writer_running) {
      // A thread clears its flag under this lock before it ends, so its id is still valid. A
      // signal that lands just before the thread enters its call is lost; the next one is not.
      if (s.reader_running) pthread_kill(s.reader_thread, sig);
      if (s.writer_running) pthread_kill(s.writer_thread, sig);
      s.exit_cv.wait_for(lock, std::chrono::milliseconds(1));
    }
    int err = 0;
    if (s.connect_done && !s.connect_reported && s.connect_err != 0) {
      err = s.connect_err;
    } else if (s.stream.err_pending != 0 || s.write_err != 0) {
      err = s.stream.err_pending != 0 ? s.stream.err_pending : s.write_err;
    }
    // Other engines expect a non-blocking fd.
    if (err == 0) err = -set_blocking(s.fd, false);
    if (err != 0) return -err;
    out->fd = s.fd;
    out->listener = s.listener;
    out->paused = s.paused;
    if (s.datagram) {
      out->datagram = true;
      out->max_datagram = s.max_datagram;
      s.outbox.save(&out->unsent);
    } else if (!s.listener) {
      // A completed connect nobody reported yet is still connecting to the stream (connected()
      // runs when it is reported): the next engine checks it with the kernel.
      s.stream.save(out);
    }
    accepted.swap(s.accepted);
    s.owns_fd = false;
    s.closing = true;
  }
  for (Accepted& a : accepted) {
    if (a.conn) stop(*a.conn);
  }
  return 0;
}

int start_adopted(const SockRef& s, const DetachedSocket& socket) {
  int rc = 0;
  if (socket.listener) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->paused = socket.paused;
    rc = spawn_locked(s, Role::kAcceptor);
  } else if (socket.datagram) {
    s->paused = socket.paused;
    s->max_datagram = socket.max_datagram;
    rc = s->outbox.restore(socket.unsent);
    if (rc == 0) rc = start_datagram_threads(s);
  } else {
    std::lock_guard<std::mutex> lock(s->mu);
    rc = s->stream.restore(socket);
    if (rc == 0 && !s->stream.queue.empty()) rc = start_writer(s);
  }
  // A connection's reader last: once it runs it may consume bytes, so nothing may fail after it.
  // (After END was delivered there is nothing left to read.)
  if (rc == 0 && !socket.listener && !socket.datagram && !socket.read_eof) {
    s->hub->delay_refused_start();
    std::lock_guard<std::mutex> lock(s->mu);
    rc = spawn_locked(s, Role::kReader);
  }
  if (rc != 0) {
    abandon_unattached(*s);
    return rc;
  }
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->attached = true;
  }
  s->reader_cv.notify_all();
  s->writer_cv.notify_all();
  return 0;
}

}  // namespace blocking
}  // namespace iomux
