// A thread that sends one UDP socket's datagrams (reactor.udp({ sendThread: true })). On loopback
// a sendmmsg also runs the receiver's half of the network stack in the caller: a game tick of 1000
// datagrams spent about 6.8 ms in the kernel on the reactor's thread (profile-24, sixth session).
// The reactor hands each batch over as a copy and returns; this thread sends them in order on its
// own duplicate of the socket's fd, so a close on the reactor's side can never make it write to a
// reused fd number. POSIX only (the glue reports EOPNOTSUPP on Windows).
#ifndef IOMUX_DATAGRAM_SENDER_H_
#define IOMUX_DATAGRAM_SENDER_H_

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "datagram.h"
#include "iomux/engine.h"
#include "notifier.h"

namespace iomux {

// Bytes a sender's queue may hold: the thread may fall a few ticks behind when its core is busy
// (a 1000-player tick is about 0.5 MiB), so more than an inline outbox's kMaxOutbox.
constexpr size_t kMaxSenderQueue = 8 * 1024 * 1024;
// Refusals kept for the glue to report; more are counted in dropped_errors() only.
constexpr size_t kMaxSenderErrors = 1024;

class DatagramSender {
 public:
  // Starts the thread on a duplicate of fd. errors_ready (may be null) is signalled from the
  // thread whenever take_error() has something; it must outlive the sender. Returns null with
  // *rc = -errno when the fd cannot be duplicated or the thread cannot start.
  static std::unique_ptr<DatagramSender> start(int fd, const Notifier* errors_ready, int* rc);
  ~DatagramSender() { stop(); }
  DatagramSender(const DatagramSender&) = delete;
  DatagramSender& operator=(const DatagramSender&) = delete;

  // Queues copies of the datagrams, in order, for the thread (udp_send_batch's contract):
  // result->queued counts those taken while the thread waits for the kernel's room (the socket's
  // send buffer is full), so a caller sees backpressure as with an inline send. Past
  // kMaxSenderQueue, or once the thread failed, result->error is set (ENOBUFS, or the failure's
  // errno) and the rest is not taken.
  void send_batch(const OutgoingDatagram* datagrams, int count, DatagramBatchResult* result);

  // Stops the thread and closes its fd; what it had not sent stays queued for save(). Joins a
  // thread that is never blocked in the kernel (sends are non-blocking, the wait for room
  // watches a stop signal), so it returns within one sendmmsg.
  void stop();

  // The queue in DatagramOutbox's byte form (a runtime fallback's `unsent`); after stop().
  void save(std::vector<uint8_t>* out) const;
  // Appends datagrams save() wrote (an adopted socket's `unsent`): 0 or -EINVAL.
  int restore(const std::vector<uint8_t>& in);

  // The errno of the oldest datagram the kernel refused (each is dropped: UDP promises no
  // delivery); false when none waits.
  bool take_error(int* error);
  uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  uint64_t dropped_errors() const { return dropped_errors_.load(std::memory_order_relaxed); }

 private:
  DatagramSender() = default;
  static void* run(void* self);
  void send_loop();
  // Waits (without the lock) until the socket may take more, or stop() is called.
  void wait_for_room(int error);

  int fd_ = -1;
  const Notifier* errors_ready_ = nullptr;
  Notifier wake_;  // stop() signals it: ends a wait for room
  pthread_t thread_{};
  bool running_ = false;  // the owner's thread only

  mutable std::mutex mutex_;
  std::condition_variable work_;
  DatagramOutbox queue_;           // guarded by mutex_; entries do not move while the thread sends
  std::deque<int> errors_;         // guarded by mutex_
  bool stopping_ = false;          // guarded by mutex_
  bool waiting_for_room_ = false;  // guarded by mutex_
  int failed_ = 0;                 // guarded by mutex_: a wait for room failed, the thread ended
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> dropped_errors_{0};
};

}  // namespace iomux

#endif  // IOMUX_DATAGRAM_SENDER_H_
