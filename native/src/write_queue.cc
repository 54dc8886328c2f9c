#include "write_queue.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace iomux {

SharedBlock* SharedBlock::copy_of(const uint8_t* data, size_t len) {
  void* memory = std::malloc(sizeof(SharedBlock) + len);
  if (memory == nullptr) return nullptr;
  auto* block = new (memory) SharedBlock(len);
  if (len > 0) std::memcpy(reinterpret_cast<uint8_t*>(block + 1), data, len);
  return block;
}

void SharedBlock::release() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  this->~SharedBlock();
  std::free(this);
}

SharedBlock* SharedPayload::acquire() {
  if (block_ == nullptr) {
    block_ = SharedBlock::copy_of(data_, len_);
    if (block_ == nullptr) return nullptr;
  }
  block_->add_ref();
  return block_;
}

WriteQueue::WriteQueue(WriteQueue&& other) noexcept
    : head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

WriteQueue& WriteQueue::operator=(WriteQueue&& other) noexcept {
  if (this != &other) {
    clear();
    head_ = std::exchange(other.head_, nullptr);
    tail_ = std::exchange(other.tail_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

bool WriteQueue::append(const uint8_t* data, size_t len) {
  iovec one{const_cast<uint8_t*>(data), len};
  return append(&one, 1, 0);
}

// One allocation at most per call, so a failed call leaves the queue as it was.
bool WriteQueue::append(const iovec* bufs, int count, size_t skip) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += bufs[i].iov_len;
  if (skip >= total) return true;
  total -= skip;

  Chunk* target = tail_;
  if (target == nullptr || target->capacity - target->end < total) {
    size_t capacity = total < kMinChunk ? kMinChunk : total;
    target = static_cast<Chunk*>(std::malloc(sizeof(Chunk) + capacity));
    if (target == nullptr) return false;
    target->start = 0;
    target->end = 0;
    target->capacity = capacity;
    target->shared = nullptr;
    link(target);
  }
  for (int i = 0; i < count; ++i) {
    size_t len = bufs[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    std::memcpy(target->owned_data() + target->end,
                static_cast<const uint8_t*>(bufs[i].iov_base) + skip, len - skip);
    target->end += len - skip;
    skip = 0;
  }
  bytes_ += total;
  return true;
}

bool WriteQueue::append_shared(SharedPayload* payload, size_t skip) {
  if (skip >= payload->size()) return true;
  auto* chunk = static_cast<Chunk*>(std::malloc(sizeof(Chunk)));
  if (chunk == nullptr) return false;
  chunk->shared = payload->acquire();
  if (chunk->shared == nullptr) {
    std::free(chunk);
    return false;
  }
  chunk->start = skip;
  chunk->end = payload->size();
  chunk->capacity = chunk->end;
  link(chunk);
  bytes_ += chunk->end - skip;
  return true;
}

void WriteQueue::link(Chunk* chunk) {
  chunk->next = nullptr;
  if (tail_ == nullptr) {
    head_ = chunk;
  } else {
    tail_->next = chunk;
  }
  tail_ = chunk;
}

void WriteQueue::free_chunk(Chunk* chunk) {
  if (chunk->shared != nullptr) chunk->shared->release();
  std::free(chunk);
}

int WriteQueue::gather(iovec* out, int max) const {
  int n = 0;
  for (Chunk* c = head_; c != nullptr && n < max; c = c->next) {
    out[n].iov_base = const_cast<uint8_t*>(c->data()) + c->start;
    out[n].iov_len = c->end - c->start;
    ++n;
  }
  return n;
}

void WriteQueue::consume(size_t n) {
  bytes_ -= n;
  while (n > 0 && head_ != nullptr) {
    size_t in_head = head_->end - head_->start;
    if (n < in_head) {
      head_->start += n;
      return;
    }
    n -= in_head;
    Chunk* next = head_->next;
    free_chunk(head_);
    head_ = next;
  }
  if (head_ == nullptr) tail_ = nullptr;
}

void WriteQueue::copy_to(std::vector<uint8_t>* out) const {
  out->reserve(out->size() + bytes_);
  for (Chunk* c = head_; c != nullptr; c = c->next) {
    out->insert(out->end(), c->data() + c->start, c->data() + c->end);
  }
}

void WriteQueue::clear() {
  while (head_ != nullptr) {
    Chunk* next = head_->next;
    free_chunk(head_);
    head_ = next;
  }
  tail_ = nullptr;
  bytes_ = 0;
}

}  // namespace iomux
