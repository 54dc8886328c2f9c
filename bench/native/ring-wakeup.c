// ring-wakeup: how late an io_uring's completions wake a sleeping event loop, per setup.
//
// The io_uring backend sleeps in libuv's epoll on the eventfd registered with its ring. Whether a
// completion that the kernel keeps as deferred task work (IORING_SETUP_DEFER_TASKRUN) signals
// that eventfd at once depends on the kernel. This tool measures it, as a loop would see it: a
// POLL_ADD on one end of a socketpair, a child process writing its clock reading to the other
// end, and the parent asleep in epoll_wait on the eventfd (and, with "+ ring fd", on the ring's
// own fd as well). For each setup and watch it prints the mean and worst delay from the write to
// the wake-up over 40 writes 2 ms apart, and how many writes woke nothing within 100 ms. Prompt
// wake-ups take tens of microseconds. (On 6.18.44 here a DEFER_TASKRUN ring's eventfd fired for
// none of them, and its ring fd woke epoll about 10 ms late.)
//
// usage: build/ring-wakeup        exit status 0, or 1 when io_uring is not available
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kWrites = 40, kGapUs = 2000, kWaitMs = 100 };

struct ring {
  int fd;
  struct io_uring_params params;
  void* sq;
  size_t sq_size;
  struct io_uring_sqe* sqes;
  size_t sqes_size;
  unsigned tail;
};

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int ring_open(struct ring* r, unsigned flags) {
  memset(r, 0, sizeof(*r));
  r->params.flags = flags;
  r->fd = (int)syscall(__NR_io_uring_setup, 8, &r->params);
  if (r->fd < 0) return -errno;
  // One mapping for the SQ and CQ rings: every kernel with these setup flags has SINGLE_MMAP.
  size_t cq_size = r->params.cq_off.cqes + r->params.cq_entries * sizeof(struct io_uring_cqe);
  size_t sq_size = r->params.sq_off.array + r->params.sq_entries * sizeof(unsigned);
  r->sq_size = sq_size > cq_size ? sq_size : cq_size;
  r->sq = mmap(NULL, r->sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
               IORING_OFF_SQ_RING);
  r->sqes_size = r->params.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                 IORING_OFF_SQES);
  if (r->sq == MAP_FAILED || r->sqes == MAP_FAILED) return -errno;
  return 0;
}

static void ring_close(struct ring* r) {
  if (r->sqes != NULL && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_size);
  if (r->sq != NULL && r->sq != MAP_FAILED) munmap(r->sq, r->sq_size);
  if (r->fd >= 0) close(r->fd);
}

static unsigned* ring_u32(struct ring* r, unsigned offset) {
  return (unsigned*)((char*)r->sq + offset);
}

// Queues a POLL_ADD for fd and submits it; returns io_uring_enter's result.
static int poll_add(struct ring* r, int fd) {
  unsigned index = r->tail & (r->params.sq_entries - 1);
  memset(&r->sqes[index], 0, sizeof(r->sqes[index]));
  r->sqes[index].opcode = IORING_OP_POLL_ADD;
  r->sqes[index].fd = fd;
  r->sqes[index].poll32_events = POLLIN;
  ring_u32(r, r->params.sq_off.array)[index] = index;
  __atomic_store_n(ring_u32(r, r->params.sq_off.tail), ++r->tail, __ATOMIC_RELEASE);
  long rc = syscall(__NR_io_uring_enter, r->fd, 1, 0, 0, NULL, 0);
  return rc < 0 ? -errno : (int)rc;
}

// Runs the task work and takes every completion; returns how many there were.
static unsigned reap(struct ring* r) {
  (void)syscall(__NR_io_uring_enter, r->fd, 0, 0, IORING_ENTER_GETEVENTS, NULL, 0);
  unsigned* head = ring_u32(r, r->params.cq_off.head);
  unsigned tail = __atomic_load_n(ring_u32(r, r->params.cq_off.tail), __ATOMIC_ACQUIRE);
  unsigned n = tail - *head;
  __atomic_store_n(head, tail, __ATOMIC_RELEASE);
  return n;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void drain(int event_fd) {
  uint64_t count;
  if (read(event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN) die("ring-wakeup: eventfd");
}

static void writer(int fd) {
  for (int i = 0; i < kWrites; ++i) {
    usleep(kGapUs);
    double sent = now_us();
    if (write(fd, &sent, sizeof(sent)) != (ssize_t)sizeof(sent)) _exit(1);
  }
  _exit(0);
}

// One setup and watch: prints a row, returns 0, or -errno when the kernel refused the setup.
static int measure(const char* name, unsigned flags, int watch_ring) {
  struct ring r;
  int rc = ring_open(&r, flags);
  if (rc < 0) {
    ring_close(&r);
    printf("| %-44s | %-14s | refused: %s |\n", name, watch_ring ? "eventfd + ring" : "eventfd",
           strerror(-rc));
    return rc;
  }
  int event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int pair[2];
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (event_fd < 0 || ep < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0 ||
      syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_EVENTFD, &event_fd, 1) != 0) {
    die("ring-wakeup: set-up");
  }
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.fd = event_fd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, event_fd, &ev) != 0) die("ring-wakeup: epoll_ctl");
  ev.data.fd = r.fd;
  if (watch_ring && epoll_ctl(ep, EPOLL_CTL_ADD, r.fd, &ev) != 0) die("ring-wakeup: epoll_ctl");

  pid_t child = fork();
  if (child < 0) die("ring-wakeup: fork");
  if (child == 0) writer(pair[1]);
  double sum = 0, worst = 0;
  int woke = 0, timeouts = 0;  // woken by epoll_wait's timeout: the write was never signalled
  for (int i = 0; i < kWrites; ++i) {
    if (poll_add(&r, pair[0]) < 0) die("ring-wakeup: io_uring_enter");
    drain(event_fd);  // a signal left by the last reap is not this write's
    for (;;) {
      struct epoll_event out[2];
      int n = epoll_wait(ep, out, 2, kWaitMs);
      if (n < 0 && errno != EINTR) die("ring-wakeup: epoll_wait");
      double at = now_us();
      drain(event_fd);
      (void)reap(&r);
      double sent;
      ssize_t got = recv(pair[0], &sent, sizeof(sent), MSG_DONTWAIT);
      if (got < 0 && errno != EAGAIN) die("ring-wakeup: recv");
      if (got != (ssize_t)sizeof(sent)) continue;  // woken before the write: wait on
      if (n == 0) {
        ++timeouts;
        break;
      }
      double delay = at - sent;
      sum += delay;
      if (delay > worst) worst = delay;
      ++woke;
      break;
    }
  }
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("ring-wakeup: writer");
  close(pair[0]);
  close(pair[1]);
  close(ep);
  close(event_fd);
  ring_close(&r);
  const char* watched = watch_ring ? "eventfd + ring" : "eventfd";
  if (woke == 0) {
    printf("| %-44s | %-14s | never | never | %d/%d |\n", name, watched, timeouts, kWrites);
  } else {
    printf("| %-44s | %-14s | %8.3f ms | %8.3f ms | %d/%d |\n", name, watched, sum / woke / 1000,
           worst / 1000, timeouts, kWrites);
  }
  return 0;
}

int main(void) {
  static const struct {
    const char* name;
    unsigned flags;
  } setups[] = {
      {"SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG",
       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
      {"SINGLE_ISSUER|DEFER_TASKRUN", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN},
      {"SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG",
       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
      {"COOP_TASKRUN|TASKRUN_FLAG", IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
      {"none", 0},
  };
  printf("| setup | watched | mean delay | worst delay | writes never signalled |\n");
  printf("|---|---|---:|---:|---:|\n");
  int available = 0;
  for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); ++i) {
    for (int watch_ring = 0; watch_ring <= 1; ++watch_ring) {
      if (measure(setups[i].name, setups[i].flags, watch_ring) == 0) available = 1;
    }
  }
  return available ? 0 : 1;
}
