// Per-connection queue of bytes the kernel did not take yet. Empty queues own no memory; small
// writes are coalesced into the tail chunk so a flush needs few iovecs. A broadcast's bytes are
// queued by reference to one shared copy (SharedPayload) instead of one copy per socket.
#ifndef IOMUX_WRITE_QUEUE_H_
#define IOMUX_WRITE_QUEUE_H_

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace iomux {

// One immutable, reference-counted copy of a broadcast's bytes. Queues of different sockets hold
// references to it; blocking_io's writer threads release theirs on their own threads, hence the
// atomic count.
class SharedBlock {
 public:
  // A copy of data with one reference (the caller's), or nullptr when memory ran out.
  static SharedBlock* copy_of(const uint8_t* data, size_t len);
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;

  void add_ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Drops one reference; the last one frees the block.
  void release();
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  size_t size() const { return len_; }

 private:
  explicit SharedBlock(size_t len) : len_(len) {}
  std::atomic<uint32_t> refs_{1};
  size_t len_;
};

// The bytes of one broadcast call (Engine::write's `shared`): a queue that must keep some of them
// takes a reference to a shared copy, made on the first such need, so a broadcast the kernels took
// whole copies nothing. Lives for the call only; the block lives on while any queue holds it.
class SharedPayload {
 public:
  SharedPayload(const uint8_t* data, size_t len) : data_(data), len_(len) {}
  SharedPayload(const SharedPayload&) = delete;
  SharedPayload& operator=(const SharedPayload&) = delete;
  ~SharedPayload() {
    if (block_ != nullptr) block_->release();
  }

  const uint8_t* data() const { return data_; }
  size_t size() const { return len_; }
  // The shared copy with one more reference for the caller, or nullptr when memory ran out.
  SharedBlock* acquire();
  // Whether a shared copy was made (some queue holds these bytes).
  bool copied() const { return block_ != nullptr; }

 private:
  const uint8_t* data_;
  size_t len_;
  SharedBlock* block_ = nullptr;
};

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
  // Appends payload's bytes past the first `skip` as a reference to its shared copy.
  bool append_shared(SharedPayload* payload, size_t skip);
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
    size_t start;         // first unsent byte
    size_t end;           // one past the last byte written into data
    size_t capacity;      // bytes allocated for data (== end for a shared chunk: nothing is added)
    SharedBlock* shared;  // the bytes are this block's, or (nullptr) follow the header
    const uint8_t* data() const {
      return shared != nullptr ? shared->data() : reinterpret_cast<const uint8_t*>(this + 1);
    }
    uint8_t* owned_data() { return reinterpret_cast<uint8_t*>(this + 1); }
  };
  static constexpr size_t kMinChunk = 16 * 1024;

  void link(Chunk* chunk);
  static void free_chunk(Chunk* chunk);

  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace iomux

#endif  // IOMUX_WRITE_QUEUE_H_
