// The platform layer on Linux (see platform.h): eventfd, accept4 and SOCK_* flags, MSG_NOSIGNAL,
// recvmmsg/sendmmsg, timerfd, real-time signals, SCHED_BATCH / SCHED_IDLE / SCHED_FIFO, affinity.
#include "platform.h"

#if defined(IOMUX_PLATFORM_LINUX)

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace iomux {
namespace platform {

int open_wake(WakeFds* out) {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return -errno;
  out->read_fd = fd;
  out->write_fd = fd;
  return 0;
}

int signal_wake(int write_fd) {
  int saved = errno;
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(write_fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the counter is at its maximum, so the fd is readable already.
  int rc = (n < 0 && errno != EAGAIN) ? -errno : 0;
  errno = saved;
  return rc;
}

int drain_wake(int read_fd) {
  int saved = errno;
  uint64_t count;  // one read takes the whole counter
  ssize_t n;
  do {
    n = ::read(read_fd, &count, sizeof(count));
  } while (n < 0 && errno == EINTR);
  int rc = 0;
  if (n < 0 && errno != EAGAIN) rc = -errno;
  if (n == 0) rc = -EBADF;  // an eventfd never gives end-of-file: the number names another file
  errno = saved;
  return rc;
}

int open_socket(int family, int type) {
  int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
}

int accept_socket(int listen_fd, bool blocking) {
  int flags = SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK);
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, flags);
    if (fd >= 0) return fd;
    if (errno != EINTR || blocking) return -errno;
  }
}

int duplicate_socket(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return copy < 0 ? -errno : copy;
}

int receive_messages(int fd, MultiMessage* messages, unsigned count, bool wait_for_first) {
  int flags = wait_for_first ? MSG_WAITFORONE : MSG_DONTWAIT;
  for (;;) {
    int n = ::recvmmsg(fd, messages, count, flags, nullptr);
    if (n >= 0) return n;
    // A thread that may block is interrupted on purpose (detach): it must see EINTR.
    if (errno == EINTR && !wait_for_first) continue;
    return -errno;
  }
}

int send_messages(int fd, MultiMessage* messages, unsigned count, bool blocking) {
  int flags = MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT);
  for (;;) {
    int n = ::sendmmsg(fd, messages, count, flags);
    if (n >= 0) return n;
    if (errno == EINTR && !blocking) continue;
    return -errno;
  }
}

int OneShotTimer::open() {
  close();
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return -errno;
  fd_ = fd;
  return 0;
}

void OneShotTimer::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int OneShotTimer::arm(int64_t ns) {
  itimerspec spec{};  // a zero it_value would disarm the timer: the caller passes >= 1
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  return ::timerfd_settime(fd_, 0, &spec, nullptr) == 0 ? 0 : -errno;
}

int OneShotTimer::disarm() {
  itimerspec off{};
  return ::timerfd_settime(fd_, 0, &off, nullptr) == 0 ? 0 : -errno;
}

bool OneShotTimer::consume() {
  uint64_t expirations = 0;
  // EAGAIN: a re-arm between the expiry and this call reset the count.
  return ::read(fd_, &expirations, sizeof(expirations)) == sizeof(expirations);
}

int interrupt_candidates(int* out, int max) {
  // SIGRTMIN itself and the first few are taken by glibc and common runtimes: start past them.
  int n = 0;
  for (int sig = SIGRTMIN + 5; sig <= SIGRTMAX && n < max; ++sig) out[n++] = sig;
  return n;
}

bool sent_by_own_thread(int code, long pid) {
  return code == SI_TKILL && pid == static_cast<long>(::getpid());
}

int set_thread_scheduling(const char* policy, int priority) {
  // Linux schedules threads, not processes: pid 0 is the calling thread. SCHED_IDLE makes a
  // CPU-bound worker yield at once to any normal thread that wakes up, such as the reactor's;
  // nice values only shrink its share. A real-time policy is the converse, for a tick thread:
  // it runs as soon as it wakes, ahead of every normal thread on its CPU.
  int chosen;
  bool realtime = false;
  if (std::strcmp(policy, "normal") == 0) {
    chosen = SCHED_OTHER;
  } else if (std::strcmp(policy, "batch") == 0) {
    chosen = SCHED_BATCH;
  } else if (std::strcmp(policy, "idle") == 0) {
    chosen = SCHED_IDLE;
  } else if (std::strcmp(policy, "fifo") == 0) {
    chosen = SCHED_FIFO;
    realtime = true;
  } else if (std::strcmp(policy, "rr") == 0) {
    chosen = SCHED_RR;
    realtime = true;
  } else {
    return -EINVAL;
  }
  if (realtime ? (priority < ::sched_get_priority_min(chosen) ||
                  priority > ::sched_get_priority_max(chosen))
               : priority != 0) {
    return -EINVAL;
  }
  sched_param param{};
  param.sched_priority = priority;
  // Without SCHED_RESET_ON_FORK every thread the caller starts later (a Worker, libuv's pool
  // when it grows) would be real-time too, and CPU-bound ones would starve the core.
  int flags = realtime ? SCHED_RESET_ON_FORK : 0;
  return ::sched_setscheduler(0, chosen | flags, &param) == 0 ? 0 : -errno;
}

namespace {

static_assert(kMaxCpus <= CPU_SETSIZE, "CPU numbers must fit a cpu_set_t");

int cpus_of(const cpu_set_t& set, int* out, int max) {
  int n = 0;
  for (int cpu = 0; cpu < kMaxCpus && n < max; ++cpu)
    if (CPU_ISSET(cpu, &set)) out[n++] = cpu;
  return n;
}

// The mask of cpus; false for an empty list or a number outside [0, kMaxCpus).
bool mask_of(const int* cpus, int n, cpu_set_t* mask) {
  CPU_ZERO(mask);
  for (int i = 0; i < n; ++i) {
    if (cpus[i] < 0 || cpus[i] >= kMaxCpus) return false;
    CPU_SET(cpus[i], mask);
  }
  return n > 0;
}

// Sets thread tid's mask (0: the calling thread) and reads it back: -EINVAL when the kernel
// narrowed it (offline CPUs, a cpuset), the thread's mask then being that narrower one.
int pin(pid_t tid, const cpu_set_t& wanted) {
  if (::sched_setaffinity(tid, sizeof(wanted), &wanted) != 0) return -errno;
  cpu_set_t now;
  if (::sched_getaffinity(tid, sizeof(now), &now) != 0) return -errno;
  return CPU_EQUAL(&now, &wanted) ? 0 : -EINVAL;
}

}  // namespace

int set_thread_affinity(const int* cpus, int n) {
  // pid 0 is the calling thread, as for set_thread_scheduling. The kernel silently drops CPUs of
  // the mask that are offline or outside the cpuset as long as one is left, so the result is read
  // back: a game server pinned to "CPU 1" must not end up sharing CPU 0 without being told.
  cpu_set_t wanted;
  if (!mask_of(cpus, n, &wanted)) return -EINVAL;
  cpu_set_t before;
  if (::sched_getaffinity(0, sizeof(before), &before) != 0) return -errno;
  int rc = pin(0, wanted);
  if (rc == -EINVAL && ::sched_setaffinity(0, sizeof(before), &before) != 0) return -errno;
  return rc;
}

int set_other_threads_affinity(const int* cpus, int n) {
  cpu_set_t wanted;
  if (!mask_of(cpus, n, &wanted)) return -EINVAL;
  // /proc/self/task lists the threads of the whole process, whichever thread reads it.
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return -errno;
  const auto self = static_cast<pid_t>(::syscall(SYS_gettid));
  int pinned = 0;
  int failure = 0;
  for (;;) {
    errno = 0;  // readdir's end of the list and its failure differ only by errno
    const dirent* entry = ::readdir(tasks);
    if (entry == nullptr) {
      failure = -errno;
      break;
    }
    char* end = nullptr;
    long tid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || tid == self) continue;
    int rc = pin(static_cast<pid_t>(tid), wanted);
    if (rc == 0) {
      ++pinned;
    } else if (rc != -ESRCH) {  // ESRCH: the thread exited since the listing
      failure = rc;
      break;
    }
  }
  ::closedir(tasks);
  if (failure != 0) return failure;
  return pinned;
}

int thread_affinity(int* out, int max) {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
  return cpus_of(set, out, max);
}

int allowed_cpus(int* out, int max) {
  // Linux has no call for "the cpuset of this thread": asking for every CPU gets the mask
  // narrowed to exactly that, which is read back before the thread's own mask is put back.
  cpu_set_t before;
  if (::sched_getaffinity(0, sizeof(before), &before) != 0) return -errno;
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int cpu = 0; cpu < kMaxCpus; ++cpu) CPU_SET(cpu, &all);
  if (::sched_setaffinity(0, sizeof(all), &all) != 0) return -errno;
  cpu_set_t allowed;
  int got = ::sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? 0 : -errno;
  if (::sched_setaffinity(0, sizeof(before), &before) != 0) return -errno;
  return got < 0 ? got : cpus_of(allowed, out, max);
}

void name_current_thread(const char* name) {
  char kept[16];  // the kernel's TASK_COMM_LEN
  std::snprintf(kept, sizeof(kept), "%s", name);
  pthread_setname_np(pthread_self(), kept);
}

}  // namespace platform
}  // namespace iomux

#endif  // IOMUX_PLATFORM_LINUX
