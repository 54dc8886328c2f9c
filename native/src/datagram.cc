#include "datagram.h"

#include <netinet/in.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "platform.h"

namespace iomux {

namespace {

void write_header(uint8_t* target, const sockaddr_storage& from) {
  DatagramHeader header;
  std::memset(&header, 0, sizeof(header));
  if (from.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&from);
    header.family = 6;
    header.port = v6->sin6_port;  // network byte order, read as big-endian by JS
    std::memcpy(header.address, &v6->sin6_addr, 16);
  } else if (from.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&from);
    header.family = 4;
    header.port = v4->sin_port;
    std::memcpy(header.address, &v4->sin_addr, 4);
  }
  std::memcpy(target, &header, sizeof(header));  // the slab gives no alignment
}

void push_record_event(EventSink* sink, int id, size_t offset, const DatagramRecord& record) {
  sink->push(record.truncated ? kEventDatagramTruncated : kEventDatagram, id,
             static_cast<int32_t>(offset), static_cast<int32_t>(record.length));
}

// How many datagrams of max_datagram fit in capacity bytes, at most max_count and kDatagramBatch.
int slots_for(size_t max_datagram, size_t capacity, int max_count) {
  size_t fit = capacity / (sizeof(DatagramHeader) + max_datagram);
  int slots = max_count < kDatagramBatch ? max_count : kDatagramBatch;
  if (fit < static_cast<size_t>(slots)) slots = static_cast<int>(fit);
  return slots < 0 ? 0 : slots;
}

bool retry_errno(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS; }

}  // namespace

int receive_datagrams(int fd, bool wait_for_first, size_t max_datagram, uint8_t* buf,
                      size_t capacity, int max_count, DatagramRecord* out, size_t* used) {
  *used = 0;
  int slots = slots_for(max_datagram, capacity, max_count);
  if (slots == 0) return 0;
  size_t slot = sizeof(DatagramHeader) + max_datagram;
  platform::MultiMessage messages[kDatagramBatch];
  iovec iov[kDatagramBatch];
  sockaddr_storage from[kDatagramBatch];
  for (int i = 0; i < slots; ++i) {
    iov[i].iov_base = buf + static_cast<size_t>(i) * slot + sizeof(DatagramHeader);
    iov[i].iov_len = max_datagram;
    std::memset(&messages[i], 0, sizeof(messages[i]));
    from[i].ss_family = AF_UNSPEC;  // stays so if the kernel names no sender: a zero header
    messages[i].msg_hdr.msg_name = &from[i];
    messages[i].msg_hdr.msg_namelen = sizeof(from[i]);
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  int n = platform::receive_messages(fd, messages, static_cast<unsigned>(slots), wait_for_first);
  if (n < 0) return n;
  // Pack the records, so a batch of short datagrams takes only the bytes that arrived.
  size_t write = 0;
  for (int i = 0; i < n; ++i) {
    size_t length = messages[i].msg_len;
    uint8_t* source = buf + static_cast<size_t>(i) * slot;
    uint8_t* target = buf + write;
    if (target != source) {
      std::memmove(target + sizeof(DatagramHeader), source + sizeof(DatagramHeader), length);
    }
    write_header(target, from[i]);
    out[i] = DatagramRecord{write, length, (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0};
    write += sizeof(DatagramHeader) + length;
  }
  *used = write;
  return n;
}

ReceiveOutcome receive_into_sink(int fd, int id, size_t max_datagram, EventSink* sink,
                                 uint64_t* bytes_read) {
  size_t room = sink->slab_capacity - sink->slab_used;
  int slots = slots_for(max_datagram, room, sink->capacity - sink->count);
  if (slots == 0) {
    sink->slab_exhausted = true;
    return ReceiveOutcome::kNoRoom;
  }
  DatagramRecord records[kDatagramBatch];
  size_t used = 0;
  int n = receive_datagrams(fd, /*wait_for_first=*/false, max_datagram,
                            sink->slab + sink->slab_used, room, slots, records, &used);
  if (n == -EAGAIN || n == -EWOULDBLOCK) return ReceiveOutcome::kDrained;
  if (n < 0) {
    // An ICMP error for an earlier send (ECONNREFUSED on a connected socket) surfaces here, once;
    // datagrams may still be queued behind it.
    sink->push(kEventSendError, id, -n);
    return ReceiveOutcome::kMore;
  }
  for (int i = 0; i < n; ++i) {
    push_record_event(sink, id, sink->slab_used + records[i].offset, records[i]);
    *bytes_read += records[i].length;
  }
  sink->slab_used += used;
  // A non-blocking batch receive stops early only when the queue ran empty.
  return n < slots ? ReceiveOutcome::kDrained : ReceiveOutcome::kMore;
}

bool deliver_record(const uint8_t* source, const DatagramRecord& record, int id, EventSink* sink) {
  size_t size = record_size(record);
  if (sink->count >= sink->capacity || sink->slab_capacity - sink->slab_used < size) {
    sink->slab_exhausted = true;
    return false;
  }
  std::memcpy(sink->slab + sink->slab_used, source + record.offset, size);
  push_record_event(sink, id, sink->slab_used, record);
  sink->slab_used += size;
  return true;
}

void DatagramOutbox::read_fault_switch() {
  queue_all_ = platform::env_is("IOMUX_FAULT_UDP_QUEUE", "1");
}

void DatagramOutbox::send_batch(int fd, const OutgoingDatagram* datagrams, int count,
                                uint64_t* bytes_written, DatagramBatchResult* result) {
  *result = DatagramBatchResult{};
  // Behind datagrams already queued nothing may overtake them, so only an empty queue sends.
  if (!has_pending() && !queue_all_) {
    platform::MultiMessage messages[kDatagramBatch];
    while (result->taken < count) {
      int batch = count - result->taken < kDatagramBatch ? count - result->taken : kDatagramBatch;
      for (int i = 0; i < batch; ++i) {
        const OutgoingDatagram& d = datagrams[result->taken + i];
        std::memset(&messages[i], 0, sizeof(messages[i]));
        messages[i].msg_hdr.msg_name = const_cast<sockaddr_storage*>(d.to);
        messages[i].msg_hdr.msg_namelen = d.to == nullptr ? 0 : d.to_len;
        messages[i].msg_hdr.msg_iov = const_cast<iovec*>(d.bufs);
        messages[i].msg_hdr.msg_iovlen = static_cast<size_t>(d.count);
      }
      int sent = platform::send_messages(fd, messages, static_cast<unsigned>(batch), false);
      // An error is reported only for the first datagram of a call; one that fails later ends
      // the call short, and the next call names it.
      if (sent < 0) {
        if (retry_errno(-sent)) break;  // no room: the rest is queued below
        result->error = -sent;
        return;
      }
      for (int i = 0; i < sent; ++i) *bytes_written += messages[i].msg_len;
      result->taken += sent;
    }
  }
  for (; result->taken < count; ++result->taken) {
    const OutgoingDatagram& d = datagrams[result->taken];
    Pending pending{};
    if (d.to != nullptr) {
      if (static_cast<size_t>(d.to_len) > sizeof(pending.to)) {
        result->error = EINVAL;
        return;
      }
      std::memcpy(&pending.to, d.to, d.to_len);
      pending.to_len = d.to_len;
    }
    size_t length = 0;
    for (int i = 0; i < d.count; ++i) length += d.bufs[i].iov_len;
    if (bytes_ + length > max_bytes_) {
      result->error = ENOBUFS;
      return;
    }
    pending.bytes.reserve(length);
    for (int i = 0; i < d.count; ++i) {
      const auto* data = static_cast<const uint8_t*>(d.bufs[i].iov_base);
      pending.bytes.insert(pending.bytes.end(), data, data + d.bufs[i].iov_len);
    }
    bytes_ += length;
    queues().pending.push_back(std::move(pending));
    ++result->queued;
  }
}

DatagramOutbox::Queues& DatagramOutbox::queues() {
  if (queues_ == nullptr) queues_ = std::make_unique<Queues>();
  return *queues_;
}

int DatagramOutbox::gather(platform::MultiMessage* messages, iovec* iov, int max) {
  if (!has_pending()) return 0;
  std::deque<Pending>& pending = queues_->pending;
  int n = max < kDatagramBatch ? max : kDatagramBatch;
  if (pending.size() < static_cast<size_t>(n)) n = static_cast<int>(pending.size());
  for (int i = 0; i < n; ++i) {
    Pending& d = pending[static_cast<size_t>(i)];
    iov[i] = iovec{d.bytes.data(), d.bytes.size()};
    std::memset(&messages[i], 0, sizeof(messages[i]));
    messages[i].msg_hdr.msg_name = d.to_len == 0 ? nullptr : &d.to;
    messages[i].msg_hdr.msg_namelen = d.to_len;
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  return n;
}

void DatagramOutbox::consume(int n) {
  for (int i = 0; i < n && has_pending(); ++i) {
    bytes_ -= queues_->pending.front().bytes.size();
    queues_->pending.pop_front();
  }
}

void DatagramOutbox::flush(int fd, int id, EventSink* sink, uint64_t* bytes_written) {
  platform::MultiMessage messages[kDatagramBatch];
  iovec iov[kDatagramBatch];
  if (queues_ == nullptr) return;
  std::deque<int>& unreported = queues_->unreported;
  while (!unreported.empty()) {
    if (sink->full()) return;
    sink->push(kEventSendError, id, unreported.front());
    unreported.pop_front();
  }
  while (has_pending()) {
    int batch = gather(messages, iov, kDatagramBatch);
    int n = platform::send_messages(fd, messages, static_cast<unsigned>(batch), false);
    if (n < 0) {
      if (retry_errno(-n)) return;
      if (sink->full()) {
        unreported.push_back(-n);
      } else {
        sink->push(kEventSendError, id, -n);
      }
      n = 1;  // a batch send fails only on the first datagram: drop that one
    } else {
      for (int i = 0; i < n; ++i) *bytes_written += messages[i].msg_len;
    }
    consume(n);
  }
}

// Each datagram as: uint32 address length, the address, uint32 payload length, the payload (host
// byte order: the bytes never leave the process).
void DatagramOutbox::save(std::vector<uint8_t>* out) const {
  if (!has_pending()) return;
  out->reserve(out->size() + bytes_ + queues_->pending.size() * 16);
  auto put_u32 = [out](uint32_t value) {
    uint8_t raw[sizeof(value)];
    std::memcpy(raw, &value, sizeof(value));
    out->insert(out->end(), raw, raw + sizeof(raw));
  };
  for (const Pending& d : queues_->pending) {
    put_u32(static_cast<uint32_t>(d.to_len));
    const auto* address = reinterpret_cast<const uint8_t*>(&d.to);
    out->insert(out->end(), address, address + d.to_len);
    put_u32(static_cast<uint32_t>(d.bytes.size()));
    out->insert(out->end(), d.bytes.begin(), d.bytes.end());
  }
}

int DatagramOutbox::restore(const std::vector<uint8_t>& in) {
  std::deque<Pending> parsed;
  size_t pos = 0;
  auto take_u32 = [&](uint32_t* value) {
    if (in.size() - pos < sizeof(*value)) return false;
    std::memcpy(value, in.data() + pos, sizeof(*value));
    pos += sizeof(*value);
    return true;
  };
  while (pos < in.size()) {
    Pending d{};
    uint32_t to_len = 0;
    uint32_t length = 0;
    if (!take_u32(&to_len) || to_len > sizeof(d.to) || in.size() - pos < to_len) return -EINVAL;
    std::memcpy(&d.to, in.data() + pos, to_len);
    d.to_len = static_cast<socklen_t>(to_len);
    pos += to_len;
    if (!take_u32(&length) || in.size() - pos < length) return -EINVAL;
    d.bytes.assign(in.begin() + static_cast<ptrdiff_t>(pos),
                   in.begin() + static_cast<ptrdiff_t>(pos + length));
    pos += length;
    parsed.push_back(std::move(d));
  }
  for (Pending& d : parsed) {
    bytes_ += d.bytes.size();
    queues().pending.push_back(std::move(d));
  }
  return 0;
}

int restore_unsent(const DetachedSocket& socket, WriteQueue* queue, DatagramOutbox* outbox) {
  if (socket.datagram) return outbox->restore(socket.unsent);
  return queue->append(socket.unsent.data(), socket.unsent.size()) ? 0 : -ENOMEM;
}

}  // namespace iomux
