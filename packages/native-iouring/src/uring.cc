#ifdef __linux__

#include "uring.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace iomux {
namespace uring {

int sys_setup(unsigned entries, io_uring_params* params) {
  long rc = syscall(__NR_io_uring_setup, entries, params);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
              size_t argsz) {
  long rc = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

int sys_register(int fd, unsigned opcode, const void* arg, unsigned nr_args) {
  long rc = syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

const std::vector<SetupChoice>& setup_choices() {
  static const std::vector<SetupChoice> choices = {
      // 6.1+: completions are only posted when we ask for them (no IPIs, no task work interrupting
      // JS); TASKRUN_FLAG tells us when deferred work is waiting.
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
           IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
       "SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL|CQSIZE"},
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
           IORING_SETUP_CQSIZE,
       "SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL|CQSIZE"},
      // 5.19: task work runs at the next kernel transition instead of by IPI.
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL |
           IORING_SETUP_CQSIZE,
       "COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL|CQSIZE"},
      {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE, "SUBMIT_ALL|CQSIZE"},
      {IORING_SETUP_CQSIZE, "CQSIZE"},
      {0, "none"},
  };
  return choices;
}

int Ring::init(unsigned sq_entries, unsigned cq_entries, size_t first_choice) {
  close();
  const std::vector<SetupChoice>& choices = setup_choices();
  int rc = -EINVAL;
  for (size_t i = first_choice; i < choices.size(); ++i) {
    io_uring_params p;
    std::memset(&p, 0, sizeof(p));
    p.flags = choices[i].flags;
    p.cq_entries = cq_entries;
    rc = sys_setup(sq_entries, &p);
    if (rc == -EINVAL) continue;  // a flag this kernel does not know: try the next set
    if (rc < 0) return rc;
    fd_ = rc;
    flags_ = p.flags;
    features_ = p.features;
    label_ = choices[i].label;
    sq_entries_ = p.sq_entries;
    cq_entries_ = p.cq_entries;
    rc = map_rings(p);
    if (rc != 0) {
      close();
      return rc;
    }
    open_spare();
    return 0;
  }
  return rc;
}

int Ring::map_rings(const io_uring_params& p) {
  sq_ring_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cq_ring_size_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) {
    if (cq_ring_size_ > sq_ring_size_) sq_ring_size_ = cq_ring_size_;
    cq_ring_size_ = sq_ring_size_;
  }
  sq_ring_ = mmap(nullptr, sq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                  IORING_OFF_SQ_RING);
  if (sq_ring_ == MAP_FAILED) {
    sq_ring_ = nullptr;
    return -errno;
  }
  if (single) {
    cq_ring_ = sq_ring_;
  } else {
    cq_ring_ = mmap(nullptr, cq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                    IORING_OFF_CQ_RING);
    if (cq_ring_ == MAP_FAILED) {
      cq_ring_ = nullptr;
      return -errno;
    }
  }
  sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                    IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return -errno;
  sqes_ = static_cast<io_uring_sqe*>(sqes);

  auto* sq = static_cast<uint8_t*>(sq_ring_);
  sq_khead_ = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
  sq_ktail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
  sq_kflags_ = reinterpret_cast<unsigned*>(sq + p.sq_off.flags);
  sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
  // SQE i always sits in array slot i, so the indirection array is filled once.
  auto* array = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
  for (unsigned i = 0; i < p.sq_entries; ++i) array[i] = i;
  sqe_tail_ = *sq_ktail_;

  auto* cq = static_cast<uint8_t*>(cq_ring_);
  cq_khead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
  cq_ktail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
  cq_kflags_ = p.cq_off.flags != 0 ? reinterpret_cast<unsigned*>(cq + p.cq_off.flags) : nullptr;
  cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
  cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  cq_head_ = *cq_khead_;
  cq_published_ = cq_head_;
  return 0;
}

void Ring::close() {
  if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_ring_size_);
  if (sq_ring_ != nullptr) munmap(sq_ring_, sq_ring_size_);
  sqes_ = nullptr;
  cq_ring_ = nullptr;
  sq_ring_ = nullptr;
  if (spare_fd_ >= 0) {
    // Closed only while it still names the same ring as fd_ (other code may have closed it and
    // reused the number).
    pid_t self = getpid();
    if (fd_ >= 0 && syscall(SYS_kcmp, self, self, KCMP_FILE, fd_, spare_fd_) == 0) {
      ::close(spare_fd_);
    }
  }
  spare_fd_ = -1;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

io_uring_sqe* Ring::get_sqe() {
  unsigned head = load_acquire(sq_khead_);
  if (sqe_tail_ - head >= sq_entries_) return nullptr;
  io_uring_sqe* sqe = &sqes_[sqe_tail_ & sq_mask_];
  ++sqe_tail_;
  std::memset(sqe, 0, sizeof(*sqe));
  return sqe;
}

// Without a descriptor nothing in flight in the ring can be cancelled, so when other code closes
// the ring's fd the receives armed in it would keep taking the sockets' bytes after the runtime
// fallback moved them: the spare keeps the ring reachable for that last cancel-and-collect. It is
// kept only where kcmp(2) can later prove a number still names this ring, so that close() never
// closes a number that other code took over.
void Ring::open_spare() {
  int spare = fcntl(fd_, F_DUPFD_CLOEXEC, fd_ + 1);
  if (spare < 0) return;
  pid_t self = getpid();
  if (syscall(SYS_kcmp, self, self, KCMP_FILE, fd_, spare) != 0) {
    ::close(spare);
    return;
  }
  spare_fd_ = spare;
}

void Ring::lose_fd() {
  // EBADF: closed; EOPNOTSUPP: the number now names a file that is not an io_uring. Either way
  // other code closed it, and the number may already be reused: never entered or closed again.
  // The spare, when there is one, takes over (the engine is still reported broken and fails
  // over); the mappings hold the ring itself alive until close() unmaps them.
  fd_ = spare_fd_;
  spare_fd_ = -1;
}

int Ring::submit(bool get_events) {
  // The SQEs must be fully written before the kernel can see the new tail.
  store_release(sq_ktail_, sqe_tail_);
  unsigned to_submit = sqe_tail_ - load_acquire(sq_khead_);
  unsigned flags = get_events ? IORING_ENTER_GETEVENTS : 0;
  if (to_submit == 0 && !get_events) return 0;
  return enter(to_submit, 0, flags, nullptr, 0);
}

int Ring::submit_and_wait(unsigned min_ready, long long timeout_ns) {
  store_release(sq_ktail_, sqe_tail_);
  unsigned to_submit = sqe_tail_ - load_acquire(sq_khead_);
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ns / 1000000000LL;
  ts.tv_nsec = timeout_ns % 1000000000LL;
  io_uring_getevents_arg arg{};
  arg.sigmask = 0;
  arg.sigmask_sz = _NSIG / 8;
  arg.ts = reinterpret_cast<uint64_t>(&ts);
  unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
  return enter(to_submit, min_ready, flags, &arg, sizeof(arg));
}

// io_uring_enter, retried on EINTR. ETIME (the wait timed out), EAGAIN and EBUSY (no room to take
// more now; the caller reaps and tries again) are not failures: 0. A ring fd closed by other code
// is lost (lose_fd) and reported as -EBADF.
int Ring::enter(unsigned to_submit, unsigned min_ready, unsigned flags, const void* arg,
                size_t argsz) {
  cq_publish();  // the kernel may flush overflowed completions into what we consumed
  for (;;) {
    int rc = sys_enter(fd_, to_submit, min_ready, flags, arg, argsz);
    if (rc >= 0) return rc;
    if (rc == -EINTR) continue;
    if (rc == -EBADF || rc == -EOPNOTSUPP) {
      lose_fd();
      return -EBADF;
    }
    if (rc == -ETIME || rc == -EAGAIN || rc == -EBUSY) return 0;
    return rc;
  }
}

void Ring::set_eventfd_enabled(bool enabled) {
  if (cq_kflags_ == nullptr) return;
  unsigned flags = __atomic_load_n(cq_kflags_, __ATOMIC_RELAXED);
  unsigned want =
      enabled ? (flags & ~IORING_CQ_EVENTFD_DISABLED) : (flags | IORING_CQ_EVENTFD_DISABLED);
  if (want != flags) __atomic_store_n(cq_kflags_, want, __ATOMIC_RELAXED);
  // Orders this store before the caller's following loads of the CQ tail and SQ flags (the kernel
  // stores those, then reads our flag: a Dekker pair, so both sides need a full barrier).
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int Ring::probe_ops(std::vector<bool>* supported) const {
  constexpr unsigned kOps = 256;
  std::vector<uint8_t> raw(sizeof(io_uring_probe) + kOps * sizeof(io_uring_probe_op), 0);
  auto* probe = reinterpret_cast<io_uring_probe*>(raw.data());
  int rc = register_op(IORING_REGISTER_PROBE, probe, kOps);
  if (rc < 0) return rc;
  supported->assign(kOps, false);
  for (unsigned i = 0; i < probe->ops_len && i < kOps; ++i) {
    const io_uring_probe_op& op = probe->ops[i];
    if ((op.flags & IO_URING_OP_SUPPORTED) != 0) (*supported)[op.op] = true;
  }
  return 0;
}

int BufferRing::init(const Ring& ring, uint16_t group, unsigned count, unsigned size) {
  release();
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) return -EINVAL;
  ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem =
      mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  static_assert(sizeof(io_uring_buf) == 16 && offsetof(io_uring_buf, resv) == 14,
                "io_uring_buf layout");
  entries_ = static_cast<io_uring_buf*>(mem);
  tail_word_ = &entries_[0].resv;
  base_bytes_ = static_cast<size_t>(count) * size;
  mem = mmap(nullptr, base_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    int err = -errno;
    release();
    return err;
  }
  base_ = static_cast<uint8_t*>(mem);
  count_ = count;
  size_ = size;
  mask_ = count - 1;
  group_ = group;
  tail_ = 0;
  unpublished_ = 0;

  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(entries_);
  reg.ring_entries = count;
  reg.bgid = group;
  int rc = ring.register_op(IORING_REGISTER_PBUF_RING, &reg, 1);
  if (rc < 0) {
    release();
    return rc;
  }
  for (unsigned bid = 0; bid < count; ++bid) recycle(bid);
  publish();
  return 0;
}

void BufferRing::release() {
  if (base_ != nullptr) munmap(base_, base_bytes_);
  if (entries_ != nullptr) munmap(entries_, ring_bytes_);
  base_ = nullptr;
  entries_ = nullptr;
  tail_word_ = nullptr;
  count_ = 0;
}

const char* opcode_name(unsigned op) {
  switch (op) {
    case IORING_OP_ACCEPT:
      return "IORING_OP_ACCEPT";
    case IORING_OP_CONNECT:
      return "IORING_OP_CONNECT";
    case IORING_OP_RECV:
      return "IORING_OP_RECV";
    case IORING_OP_SENDMSG:
      return "IORING_OP_SENDMSG";
    case IORING_OP_ASYNC_CANCEL:
      return "IORING_OP_ASYNC_CANCEL";
    case IORING_OP_POLL_ADD:
      return "IORING_OP_POLL_ADD";
    default:
      return "IORING_OP_?";
  }
}

}  // namespace uring
}  // namespace iomux

#endif  // __linux__
