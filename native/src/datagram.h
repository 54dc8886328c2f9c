// UDP logic every engine shares: batched receives (recvmmsg where the kernel has it, see
// platform.h) into packed records, the bounded send queue (outbox) flushed in batches, and the
// outbox's byte form for a runtime fallback. Engines differ only in when they call these: on
// readiness (epoll, select), on an io_uring poll completion, or on a blocking thread (blocking_io).
#ifndef IOMUX_DATAGRAM_H_
#define IOMUX_DATAGRAM_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "iomux/engine.h"
#include "platform.h"
#include "write_queue.h"

namespace iomux {

// Datagrams per batch receive / send (one recvmmsg / sendmmsg where the kernel has them).
constexpr int kDatagramBatch = 32;
// Bytes a socket's outbox may hold; udp_send past it returns -ENOBUFS.
constexpr size_t kMaxOutbox = 1024 * 1024;

// One received datagram inside a buffer: a DatagramHeader at `offset`, then `length` payload bytes.
struct DatagramRecord {
  size_t offset;
  size_t length;
  bool truncated;  // the datagram was longer than max_datagram and was cut to it
};

// Bytes one record takes in a buffer (header and payload).
inline size_t record_size(const DatagramRecord& record) {
  return sizeof(DatagramHeader) + record.length;
}

// Receives up to max_count datagrams (at most kDatagramBatch) with one batch receive into
// buf[0, capacity), as records packed back to back from buf[0], each payload cut to max_datagram.
// wait_for_first: false for non-blocking engines (never blocks), true for a thread that may block
// for the first datagram only (MSG_WAITFORONE). Returns the count, 0 when not even one datagram of
// max_datagram fits in capacity, or -errno (EAGAIN: nothing waiting; ECONNREFUSED and the like: an
// ICMP error for an earlier send, which recv reports once). *used gets the bytes the records take.
int receive_datagrams(int fd, bool wait_for_first, size_t max_datagram, uint8_t* buf,
                      size_t capacity, int max_count, DatagramRecord* out, size_t* used);

// What receive_into_sink found.
enum class ReceiveOutcome {
  kDrained,  // the socket's receive queue was empty by the end: wait for the next readiness
  kMore,     // more may wait (a full batch, or an error was reported): receive again
  kNoRoom,   // the batch is full (sink->slab_exhausted is set): receive again in the next poll
};

// One non-blocking batch receive straight into the sink's slab, a kEventDatagram or
// kEventDatagramTruncated per datagram; an error becomes a kEventSendError. Adds the payload bytes
// to *bytes_read.
ReceiveOutcome receive_into_sink(int fd, int id, size_t max_datagram, EventSink* sink,
                                 uint64_t* bytes_read);

// Appends a record from `source` (its header and payload) to the sink with its event. False
// when it does not fit in this batch (sink->slab_exhausted is then set).
bool deliver_record(const uint8_t* source, const DatagramRecord& record, int id, EventSink* sink);

// A socket's queue of datagrams the kernel had no room for, oldest first, bounded by kMaxOutbox.
// Entries never move once queued (a deque), so a thread may send the front ones without a lock
// while another thread only appends.
class DatagramOutbox {
 public:
  // False while datagrams are queued or a refused one's error still waits to be reported: the
  // engine keeps asking for writability and calling flush() until both are done.
  bool empty() const {
    return queues_ == nullptr || (queues_->pending.empty() && queues_->unreported.empty());
  }
  size_t bytes() const { return bytes_; }

  // Engines call this when they open a UDP socket. IOMUX_FAULT_UDP_QUEUE=1 in the environment
  // (fault injection for tests) makes send() queue every datagram, as when the socket buffer is
  // full, until the engine's next poll lets the flush run: loopback never refuses a datagram, so
  // the flush path and the bound are otherwise unreachable there.
  void read_fault_switch();
  bool queues_all() const { return queue_all_; }
  // A sender thread's queue (datagram_sender.h): send_batch() only queues, up to max_bytes.
  void set_queue_only(uint32_t max_bytes) {
    queue_all_ = true;
    max_bytes_ = max_bytes;
  }

  // The udp_send_batch contract on fd: with nothing queued, sends at once in batches (never
  // blocking) until the kernel has no room; the rest is queued as copies, in order, while the
  // bound (kMaxOutbox, or set_queue_only's) allows. When result->queued > 0 the caller arranges a
  // flush.
  void send_batch(int fd, const OutgoingDatagram* datagrams, int count, uint64_t* bytes_written,
                  DatagramBatchResult* result);

  // Describes up to max (at most kDatagramBatch) datagrams from the front for a batch send.
  int gather(platform::MultiMessage* messages, iovec* iov, int max);
  // Drops the first n datagrams (sent, or refused by the kernel).
  void consume(int n);

  // Sends what the kernel takes now, without blocking. A datagram the kernel refuses
  // is dropped (UDP promises no delivery; the socket stays usable) and its errno reported as a
  // kEventSendError: in this batch when it has room, else kept and reported first by a later
  // flush (the refusal is not retried: the kernel may report an error only once).
  void flush(int fd, int id, EventSink* sink, uint64_t* bytes_written);

  // Runtime fallback: the queue as bytes (DetachedSocket::unsent of a datagram socket), and back.
  // restore() appends; -EINVAL for bytes save() did not write.
  void save(std::vector<uint8_t>* out) const;
  int restore(const std::vector<uint8_t>& in);

 private:
  struct Pending {
    sockaddr_storage to;
    socklen_t to_len;  // 0: the connected peer
    std::vector<uint8_t> bytes;
  };

  struct Queues {
    std::deque<Pending> pending;
    std::deque<int> unreported;  // errnos of refused datagrams a full batch had no room for
  };
  // Made when the first datagram is queued and kept for the outbox's life (a writer thread may be
  // reading entries): every engine's socket slot embeds an outbox, and an empty std::deque already
  // allocates about half a KiB, which was 1 KiB per idle TCP connection.
  Queues& queues();
  bool has_pending() const { return queues_ != nullptr && !queues_->pending.empty(); }

  std::unique_ptr<Queues> queues_;
  size_t bytes_ = 0;
  uint32_t max_bytes_ = kMaxOutbox;  // 32 bits: fits beside queue_all_ in every socket slot
  bool queue_all_ = false;
};

// adopt(): puts a detached socket's `unsent` back where its kind keeps it, the stream's queue or
// the datagram outbox. Returns 0, -ENOMEM, or -EINVAL for outbox bytes save() did not write.
int restore_unsent(const DetachedSocket& socket, WriteQueue* queue, DatagramOutbox* outbox);

}  // namespace iomux

#endif  // IOMUX_DATAGRAM_H_
