// A minimal io_uring over the raw kernel uapi (no liburing): setup with flag fallback, the mmap'd
// submission and completion rings with the barriers the kernel expects, io_uring_enter and
// io_uring_register, and a provided-buffer ring. Everything here runs on one thread.
#ifndef IOMUX_IOURING_URING_H_
#define IOMUX_IOURING_URING_H_

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace iomux {
namespace uring {

// Added to the uapi after the 6.1 headers this package may be built against.
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

// Acquire/release access to the words the kernel shares with us.
template <typename T>
inline T load_acquire(const T* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <typename T>
inline void store_release(T* p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

int sys_setup(unsigned entries, io_uring_params* params);
int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
              size_t argsz);
int sys_register(int fd, unsigned opcode, const void* arg, unsigned nr_args);

// Setup flag sets, best first. Each later set drops what an older kernel rejects with EINVAL.
struct SetupChoice {
  unsigned flags;
  const char* label;
};
const std::vector<SetupChoice>& setup_choices();

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { close(); }

  // Creates the ring with the first flag set of setup_choices() the kernel takes (from
  // `first_choice` on), CQ sized to cq_entries. Returns 0 or -errno of the last attempt.
  int init(unsigned sq_entries, unsigned cq_entries, size_t first_choice = 0);
  void close();

  // -1 once the fd was found closed by other code and no spare was left (see lose_fd).
  int fd() const { return fd_; }
  unsigned flags() const { return flags_; }
  unsigned features() const { return features_; }
  const char* setup_label() const { return label_; }
  unsigned sq_entries() const { return sq_entries_; }
  unsigned cq_entries() const { return cq_entries_; }

  // A zeroed SQE, or null when the submission ring is full.
  io_uring_sqe* get_sqe();
  // SQEs prepared but not yet consumed by the kernel.
  unsigned sq_pending() const { return sqe_tail_ - load_acquire(sq_khead_); }
  // Count of SQEs prepared so far (monotonic, wraps like the ring indices).
  unsigned sqe_tail() const { return sqe_tail_; }

  // Turns every SQE the kernel has not read yet that names `fd` into a NOP whose user_data is
  // retag(old user_data), and returns how many. Without SQPOLL the kernel reads SQEs only inside
  // io_uring_enter on this thread, so entries past its head are ours to rewrite.
  template <typename Retag>
  unsigned withdraw(int fd, Retag retag) {
    unsigned n = 0;
    for (unsigned i = load_acquire(sq_khead_); i != sqe_tail_; ++i) {
      io_uring_sqe* sqe = &sqes_[i & sq_mask_];
      if (sqe->fd != fd || sqe->opcode == IORING_OP_NOP) continue;
      uint64_t user_data = retag(sqe->user_data);
      std::memset(sqe, 0, sizeof(*sqe));
      sqe->opcode = IORING_OP_NOP;
      sqe->fd = -1;
      sqe->user_data = user_data;
      ++n;
    }
    return n;
  }

  // Publishes prepared SQEs and enters the kernel. get_events runs deferred task work and flushes
  // overflowed completions (IORING_ENTER_GETEVENTS). Returns SQEs consumed or -errno; EINTR is
  // retried, EAGAIN/EBUSY are reported as 0 (the caller reaps, then tries again).
  int submit(bool get_events);
  // Like submit(true), but waits up to timeout_ns for the CQ to hold at least min_ready entries.
  int submit_and_wait(unsigned min_ready, long long timeout_ns);

  // Completion ring: entries [cq_head(), cq_head() + cq_ready()) are ours to read.
  unsigned cq_head() const { return cq_head_; }
  unsigned cq_ready() const { return load_acquire(cq_ktail_) - cq_head_; }
  io_uring_cqe* cqe_at(unsigned index) { return &cqes_[index & cq_mask_]; }
  // Takes entries up to `head` off our side of the ring without telling the kernel yet: a reap
  // releases the ring once at its end (cq_publish) instead of one shared store per CQE. The kernel
  // learns the head at the latest before our next io_uring_enter (enter publishes it).
  void cq_consume(unsigned head) { cq_head_ = head; }
  // Gives the entries consumed so far back to the kernel.
  void cq_publish() {
    if (cq_published_ == cq_head_) return;
    cq_published_ = cq_head_;
    store_release(cq_khead_, cq_head_);
  }
  // Gives entries up to `head` back to the kernel.
  void cq_release(unsigned head) {
    cq_consume(head);
    cq_publish();
  }

  uint32_t sq_flags() const { return load_acquire(sq_kflags_); }
  // IORING_CQ_EVENTFD_DISABLED: while set, the kernel does not signal the registered eventfd.
  void set_eventfd_enabled(bool enabled);

  int register_op(unsigned opcode, const void* arg, unsigned nr_args) const {
    return sys_register(fd_, opcode, arg, nr_args);
  }
  // Fills supported[op] from IORING_REGISTER_PROBE. Returns 0 or -errno.
  int probe_ops(std::vector<bool>* supported) const;

 private:
  int map_rings(const io_uring_params& p);
  int enter(unsigned to_submit, unsigned min_ready, unsigned flags, const void* arg, size_t argsz);
  void lose_fd();
  void open_spare();

  int fd_ = -1;
  // A second descriptor of the same ring (see open_spare), or -1.
  int spare_fd_ = -1;
  unsigned flags_ = 0;
  unsigned features_ = 0;
  const char* label_ = "";
  unsigned sq_entries_ = 0;
  unsigned cq_entries_ = 0;

  void* sq_ring_ = nullptr;
  size_t sq_ring_size_ = 0;
  void* cq_ring_ = nullptr;
  size_t cq_ring_size_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqes_size_ = 0;

  unsigned* sq_khead_ = nullptr;
  unsigned* sq_ktail_ = nullptr;
  unsigned* sq_kflags_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned sqe_tail_ = 0;

  unsigned* cq_khead_ = nullptr;
  unsigned* cq_ktail_ = nullptr;
  unsigned* cq_kflags_ = nullptr;
  io_uring_cqe* cqes_ = nullptr;
  unsigned cq_mask_ = 0;
  unsigned cq_head_ = 0;
  unsigned cq_published_ = 0;  // the head the kernel was last given
};

// A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): `count` buffers of `size` bytes
// the kernel picks from for IOSQE_BUFFER_SELECT receives. Buffers come back with recycle(); the
// kernel sees them after publish().
class BufferRing {
 public:
  BufferRing() = default;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing() { release(); }

  // Returns 0 or -errno (EINVAL: the kernel has no provided-buffer rings).
  int init(const Ring& ring, uint16_t group, unsigned count, unsigned size);
  // Unmaps the memory; call after the ring is closed (or the group unregistered) and no receive
  // that selected a buffer can still be running.
  void release();
  // Forgets the memory without unmapping it: for a teardown that could not prove the kernel done
  // with it (a receive still in flight could otherwise write into whatever is mapped there next).
  void abandon() {
    base_ = nullptr;
    entries_ = nullptr;
    tail_word_ = nullptr;
    count_ = 0;
  }

  uint16_t group() const { return group_; }
  unsigned size() const { return size_; }
  unsigned count() const { return count_; }
  const uint8_t* buffer(unsigned bid) const { return base_ + static_cast<size_t>(bid) * size_; }
  bool valid(unsigned bid) const { return bid < count_; }

  void recycle(unsigned bid) {
    io_uring_buf* b = &entries_[tail_ & mask_];
    b->addr = reinterpret_cast<uint64_t>(base_ + static_cast<size_t>(bid) * size_);
    b->len = size_;
    b->bid = static_cast<uint16_t>(bid);
    ++tail_;
    ++unpublished_;
  }
  // Makes recycled buffers visible to the kernel. Returns how many were published.
  unsigned publish() {
    unsigned n = unpublished_;
    if (n != 0) {
      store_release(tail_word_, tail_);
      unpublished_ = 0;
    }
    return n;
  }

 private:
  // The ring is an array of io_uring_buf whose first entry's `resv` field doubles as the tail.
  // Addressed by hand: in C++ the uapi's __DECLARE_FLEX_ARRAY puts `bufs` at offset 8, not 0.
  io_uring_buf* entries_ = nullptr;
  uint16_t* tail_word_ = nullptr;
  size_t ring_bytes_ = 0;
  uint8_t* base_ = nullptr;
  size_t base_bytes_ = 0;
  unsigned count_ = 0;
  unsigned size_ = 0;
  unsigned mask_ = 0;
  uint16_t tail_ = 0;
  unsigned unpublished_ = 0;
  uint16_t group_ = 0;
};

const char* opcode_name(unsigned op);

}  // namespace uring
}  // namespace iomux

#endif  // IOMUX_IOURING_URING_H_
