// Per-connection queue of bytes the kernel did not take yet. Empty queues own no memory; small
// writes are coalesced into the tail chunk so a flush needs few iovecs.
#ifndef IOMUX_WRITE_QUEUE_H_
#define IOMUX_WRITE_QUEUE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace iomux {

class WriteQueue {
 public:
  WriteQueue() = default;
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;
  WriteQueue(WriteQueue&& other) noexcept;
  WriteQueue& operator=(WriteQueue&& other) noexcept;
  ~WriteQueue() { clear(); }

  bool empty() const { return head_ == nullptr; }
  size_t size() const { return bytes_; }

  // Copies data in. Returns false when memory ran out (nothing was queued then).
  bool append(const uint8_t* data, size_t len);
  // Appends the parts of bufs past the first `skip` bytes.
  bool append(const iovec* bufs, int count, size_t skip);
  // Fills up to max iovecs with the queued bytes, in order. Returns how many were filled.
  int gather(iovec* out, int max) const;
  // Drops the first n bytes (n <= size()).
  void consume(size_t n);
  // Appends every queued byte, in order, to out (a runtime fallback's DetachedSocket::unsent).
  void copy_to(std::vector<uint8_t>* out) const;
  void clear();

 private:
  struct Chunk {
    Chunk* next;
    size_t start;     // first unsent byte
    size_t end;       // one past the last byte written into data
    size_t capacity;  // bytes allocated for data
    // The bytes follow the header in the same allocation.
    uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
  };
  static constexpr size_t kMinChunk = 16 * 1024;

  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace iomux

#endif  // IOMUX_WRITE_QUEUE_H_
