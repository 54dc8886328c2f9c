// Read arenas: the memory the engines read into and JS sees as one external Buffer per arena.
//
// Each poll's batch is appended to the current arena (EventSink::reset(base)), so a batch costs no
// allocation and no copy: JS gets the arena's Buffer and DATA offsets into it. Bytes handed to JS
// are never written again while any JS view of the arena lives. When the arena has less room left
// than one batch may fill, the glue retires it (drops its own reference; JS views keep it alive)
// and takes the next one from the pool; the arena's finalizer, which runs once V8 collected the
// last view, gives the block back. Blocks on the free list were touched before, so steady state
// neither allocates nor page-faults. The pool outlives its NativeBackend (finalizers can run after
// it was destroyed): each finalizer hint holds a shared_ptr to it. Finalizers may run on a thread
// other than the one that polls, hence the mutex.
//
// V8 learns about this memory from live_bytes(): what the pool holds in blocks, handed out or
// free. Reporting each take instead (and un-reporting each give_back) showed V8 a block's worth of
// "new" external memory per retired arena, which paced a major GC every ~30 MiB read even though
// the blocks were the same ones over and over; the young-generation collections that find dead
// views are enough to bring blocks back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace iomux {

class ArenaPool {
 public:
  // block_size bytes per arena; at most max_free blocks wait on the free list (more are freed).
  ArenaPool(size_t block_size, size_t max_free) : block_size_(block_size), max_free_(max_free) {}
  ArenaPool(const ArenaPool&) = delete;
  ArenaPool& operator=(const ArenaPool&) = delete;
  ~ArenaPool() {
    for (uint8_t* block : free_) delete[] block;
  }

  size_t block_size() const { return block_size_; }

  // A block from the free list, else a new one; nullptr when memory is exhausted.
  uint8_t* take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        uint8_t* block = free_.back();
        free_.pop_back();
        ++reused_;
        return block;
      }
      ++allocated_;
    }
    auto* block = new (std::nothrow) uint8_t[block_size_];
    if (block != nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      live_bytes_ += block_size_;
    }
    return block;
  }

  // A block JS no longer references (or one never handed out) comes back.
  void give_back(uint8_t* block) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!closed_ && free_.size() < max_free_) {
        free_.push_back(block);
        return;
      }
      live_bytes_ -= block_size_;
    }
    delete[] block;
  }

  // The backend closed: free what waits, and free blocks as they come back from now on.
  void close() {
    std::vector<uint8_t*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      blocks.swap(free_);
      live_bytes_ -= blocks.size() * block_size_;
    }
    for (uint8_t* block : blocks) delete[] block;
  }

  // Blocks allocated so far, and blocks taken again from the free list (for counters and tests).
  uint64_t allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return allocated_;
  }
  uint64_t reused() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reused_;
  }
  // Bytes of the blocks that exist (handed out or free): the memory to report to V8.
  size_t live_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_bytes_;
  }

 private:
  const size_t block_size_;
  const size_t max_free_;
  std::mutex mutex_;
  std::vector<uint8_t*> free_;
  bool closed_ = false;
  uint64_t allocated_ = 0;
  uint64_t reused_ = 0;
  size_t live_bytes_ = 0;
};

// The finalizer hint of one arena's external Buffer.
struct ArenaRelease {
  std::shared_ptr<ArenaPool> pool;
  uint8_t* block;
};

}  // namespace iomux
