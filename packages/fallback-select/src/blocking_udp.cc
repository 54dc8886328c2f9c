#include "blocking_udp.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include "notifier.h"
#include "platform.h"
#include "socket_util.h"

namespace iomux {
namespace blocking {

namespace {

// Errors recv reports once for an ICMP message about an earlier send; others may persist.
bool reported_once(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN ||
         err == EMSGSIZE || err == EPROTO || err == ENOPROTOOPT;
}

// Called with s->mu held.
void report_send_error(Sock& s, int err) {
  if (s.send_errors.size() < kHeldSendErrors) s.send_errors.push_back(err);
}

}  // namespace

int open_datagram_sock(const std::shared_ptr<Hub>& hub, const UdpRequest& request, SockRef* out) {
  if (!hub->reserve(kConnectionSlots)) return -EAGAIN;
  int fd = open_datagram(request);
  int rc = fd < 0 ? fd : set_blocking(fd, true);
  if (rc != 0) {
    if (fd >= 0) close_fd(fd);
    hub->unreserve(kConnectionSlots);
    return rc;
  }
  SockRef s = std::make_shared<Sock>(hub, fd, false, true);
  s->slots = kConnectionSlots;
  s->attached = true;
  s->max_datagram = request.max_datagram;
  s->outbox.read_fault_switch();
  *out = std::move(s);
  return 0;
}

int start_datagram_threads(const SockRef& s) {
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

bool send_datagrams(Sock& s, const OutgoingDatagram* datagrams, int count, uint64_t* direct_written,
                    DatagramBatchResult* result) {
  std::lock_guard<std::mutex> lock(s.mu);
  s.outbox.send_batch(s.fd, datagrams, count, direct_written, result);
  if (result->queued == 0) return false;
  if (s.outbox.queues_all()) {
    s.flush_held = true;  // fault injection: the writer goes on at the next poll
    return true;
  }
  s.writer_cv.notify_one();
  return false;
}

bool serve_datagram(Sock& s, EventSink* sink, Counters* counters) {
  int id = s.id;
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.flush_held) {
    s.flush_held = false;
    s.writer_cv.notify_one();
  }
  while (!s.send_errors.empty()) {
    if (sink->full()) return true;
    sink->push(kEventSendError, id, s.send_errors.front());
    s.send_errors.pop_front();
  }
  if (s.paused) return false;  // resuming schedules the socket again
  bool consumed = false;
  bool more = false;
  while (!s.datagrams.empty()) {
    DatagramBatch& batch = s.datagrams.front();
    const DatagramRecord& record = batch.records[batch.next];
    if (!deliver_record(batch.data.get(), record, id, sink)) {
      more = true;
      break;
    }
    counters->bytes_read += record.length;
    s.datagram_bytes -= record_size(record);
    consumed = true;
    if (++batch.next == batch.records.size()) s.datagrams.pop_front();
  }
  if (consumed) s.reader_cv.notify_one();
  return more;
}

void run_datagram_reader(const SockRef& s) {
  Hub& hub = *s->hub;
  const size_t slot = sizeof(DatagramHeader) + s->max_datagram;
  size_t slots = kDatagramScratchBytes / slot;
  if (slots < 1) slots = 1;
  if (slots > static_cast<size_t>(kDatagramBatch)) slots = kDatagramBatch;
  const size_t capacity = slots * slot;
  std::unique_ptr<uint8_t[]> scratch;
  DatagramRecord records[kDatagramBatch];
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    s->reader_cv.wait(lock, [&] {
      return s->stopped() || (s->attached && !s->paused && s->datagram_bytes < kHeldDatagramBytes);
    });
    if (s->stopped()) return;
    lock.unlock();
    if (!scratch) scratch.reset(new (std::nothrow) uint8_t[capacity]);
    size_t used = 0;
    // Blocks for the first datagram only, then takes what else is queued.
    int n = scratch ? receive_datagrams(s->fd, /*wait_for_first=*/true, s->max_datagram,
                                        scratch.get(), capacity, kDatagramBatch, records, &used)
                    : -ENOMEM;
    DatagramBatch batch;
    if (n > 0) {
      batch.data.reset(new (std::nothrow) uint8_t[used]);
      if (batch.data) {
        std::memcpy(batch.data.get(), scratch.get(), used);
        batch.records.assign(records, records + n);
      } else {
        n = -ENOMEM;
      }
    }
    if (n == -EAGAIN || n == -EWOULDBLOCK) (void)wait_ready(s->fd, POLLIN);
    lock.lock();
    // Closing: shutdown() made the receive return (with empty datagrams); nothing is delivered.
    if (s->closing) return;
    if (n > 0) {
      s->datagram_bytes += used;
      s->datagrams.push_back(std::move(batch));
      hub.post(s);
      continue;
    }
    if (n == 0 || n == -EINTR || n == -EAGAIN || n == -EWOULDBLOCK) continue;
    report_send_error(*s, -n);
    hub.post(s);
    if (!reported_once(-n)) {
      s->reader_cv.wait_for(lock, std::chrono::milliseconds(kAcceptBackoffMs),
                            [&] { return s->stopped(); });
    }
  }
}

void run_datagram_writer(const SockRef& s) {
  Hub& hub = *s->hub;
  platform::MultiMessage messages[kDatagramBatch];
  iovec iov[kDatagramBatch];
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    s->writer_cv.wait(lock, [&] {
      return s->stopped() || (s->attached && !s->outbox.empty() && !s->flush_held);
    });
    if (s->stopped()) return;
    // Queued datagrams never move and the main thread only appends while this runs (it sends
    // itself only while the outbox is empty), so the gathered ones stay put.
    int count = s->outbox.gather(messages, iov, kDatagramBatch);
    lock.unlock();
    int n = platform::send_messages(s->fd, messages, static_cast<unsigned>(count), true);
    int err = n < 0 ? -n : 0;
    if (err == EAGAIN || err == EWOULDBLOCK) (void)wait_ready(s->fd, POLLOUT);
    lock.lock();
    if (s->closing) return;
    if (n >= 0) {
      uint64_t sent = 0;
      for (int i = 0; i < n; ++i) sent += messages[i].msg_len;
      hub.bytes_written.fetch_add(sent, std::memory_order_relaxed);
      s->outbox.consume(n);
      continue;
    }
    if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK) continue;
    if (err == ENOBUFS) {
      // The device queue is full and POLLOUT would not wait for it: retry shortly.
      s->writer_cv.wait_for(lock, std::chrono::milliseconds(1), [&] { return s->stopped(); });
      continue;
    }
    // The kernel refused the first datagram (EMSGSIZE, EACCES, an earlier ICMP error, ...): it is
    // dropped and reported; the socket stays usable.
    s->outbox.consume(1);
    report_send_error(*s, err);
    hub.post(s);
  }
}

}  // namespace blocking
}  // namespace iomux
