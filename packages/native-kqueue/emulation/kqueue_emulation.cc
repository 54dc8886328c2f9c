// TEST-ONLY kqueue(2) emulation over epoll, so the kqueue backend runs on Linux (see sys/event.h
// for what it covers and where it differs). The kqueue fd is an epoll fd: it is readable when an
// event is pending, so libuv can watch it as it watches a real kqueue. Each watched fd is in that
// epoll once, with the union of its enabled knotes' interest; which knote fires, and what
// EV_ONESHOT / EV_DISPATCH do after delivery, is kept here.
//
// Semantics from the FreeBSD and macOS manual pages:
// - changes are applied in order; an error in one (or any change with EV_RECEIPT) is returned as
//   an EV_ERROR entry with the errno in `data`, consuming an eventlist slot, and then the call
//   returns those entries only, without looking for pending events; with no slot left for an
//   error, kevent() fails with that errno and later changes are not applied;
// - EV_ADD adds or, for an existing (ident, filter), modifies (udata, flags) and enables unless
//   EV_DISABLE is given; EV_DELETE / EV_ENABLE / EV_DISABLE of a knote that does not exist fail
//   with ENOENT; an ident that is not an open fd fails with EBADF; closing an fd drops its knotes;
// - knotes are level-triggered; EV_CLEAR resets the state after retrieval (edge-triggered),
//   EV_ONESHOT deletes the knote after its first event, EV_DISPATCH disables it;
// - EVFILT_READ sets EV_EOF once the read direction is shut (peer FIN, reset); EVFILT_WRITE sets
//   EV_EOF once the socket can send no more (reset, both directions shut). fflags stays 0: Linux
//   cannot read a socket's pending error without clearing it, and the next read or write must
//   still see it.
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/event.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kRead = 0;
constexpr int kWrite = 1;
constexpr uint16_t kKeptFlags = EV_ONESHOT | EV_CLEAR | EV_DISPATCH;

struct Knote {
  bool present = false;
  bool enabled = false;
  uint16_t flags = 0;  // kKeptFlags of the last EV_ADD
  void* udata = nullptr;
};

// The knotes of one fd, and which file they belong to: a number closed and reused names another
// file, whose knotes start empty (the kernel dropped the old ones at close).
struct Watched {
  Knote knotes[2];
  dev_t dev = 0;
  ino_t ino = 0;
  bool registered = false;  // in the epoll set as far as we know (close removes it silently)
};

struct Queue {
  std::unordered_map<int, Watched> fds;
  std::deque<struct kevent> overflow;  // events of one epoll report that did not fit
};

std::mutex g_mutex;
std::unordered_map<int, Queue> g_queues;  // by kqueue fd (its epoll fd)

int filter_index(int16_t filter) {
  if (filter == EVFILT_READ) return kRead;
  if (filter == EVFILT_WRITE) return kWrite;
  return -1;
}

// Brings the epoll registration of fd in line with its enabled knotes. Returns 0 or an errno.
int sync(int kq, int fd, Watched* w) {
  uint32_t events = 0;
  bool clear = false;
  for (int i = 0; i < 2; ++i) {
    const Knote& k = w->knotes[i];
    if (!k.present) continue;
    clear = clear || (k.flags & EV_CLEAR) != 0;
    if (k.enabled) events |= i == kRead ? (EPOLLIN | EPOLLRDHUP) : EPOLLOUT;
  }
  epoll_event ev{};
  ev.data.fd = fd;
  ev.events = events | (clear ? EPOLLET : 0u);
  if (events == 0) {
    if (!w->registered) return 0;
    w->registered = false;
    if (epoll_ctl(kq, EPOLL_CTL_DEL, fd, &ev) != 0 && errno != ENOENT) return errno;
    return 0;
  }
  int op = w->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  int rc = epoll_ctl(kq, op, fd, &ev);
  if (rc != 0 && errno == ENOENT && op == EPOLL_CTL_MOD) rc = epoll_ctl(kq, EPOLL_CTL_ADD, fd, &ev);
  if (rc != 0 && errno == EEXIST && op == EPOLL_CTL_ADD) rc = epoll_ctl(kq, EPOLL_CTL_MOD, fd, &ev);
  if (rc != 0) return errno;
  w->registered = true;
  return 0;
}

// One change of the changelist. Returns 0 or the errno its EV_ERROR entry carries.
int apply(int kq, Queue* q, const struct kevent& change) {
  int index = filter_index(change.filter);
  if (index < 0) return EINVAL;
  if (change.ident > static_cast<uintptr_t>(INT_MAX)) return EBADF;
  int fd = static_cast<int>(change.ident);
  struct stat st{};
  if (fstat(fd, &st) != 0) return EBADF;
  Watched& w = q->fds[fd];
  if (w.dev != st.st_dev || w.ino != st.st_ino) {
    w = Watched{};  // another file behind a reused number: its knotes are new
    w.dev = st.st_dev;
    w.ino = st.st_ino;
  }
  Knote& k = w.knotes[index];
  Knote before = k;
  if ((change.flags & EV_ADD) != 0) {
    const Knote& other = w.knotes[1 - index];
    uint16_t wanted = change.flags & kKeptFlags;
    if (other.present && ((other.flags ^ wanted) & EV_CLEAR) != 0) return EINVAL;
    k.present = true;
    k.enabled = true;
    k.flags = wanted;
    k.udata = change.udata;
  } else if (!k.present) {
    return ENOENT;
  }
  if ((change.flags & EV_DELETE) != 0) k = Knote{};
  if ((change.flags & EV_ENABLE) != 0) k.enabled = true;
  if ((change.flags & EV_DISABLE) != 0) k.enabled = false;
  int err = sync(kq, fd, &w);
  if (err != 0) {
    k = before;
    (void)sync(kq, fd, &w);
  }
  return err;
}

intptr_t readable_bytes(int fd) {
  int n = 0;
  return ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

intptr_t send_space(int fd) {
  int size = 0;
  socklen_t len = sizeof(size);
  int queued = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) != 0) return 0;
  if (ioctl(fd, SIOCOUTQ, &queued) != 0) return size;
  return size > queued ? size - queued : 0;
}

// The events one epoll report of fd stands for, applying EV_ONESHOT / EV_DISPATCH. Appends to out.
void translate(int kq, int fd, uint32_t bits, Watched* w, std::vector<struct kevent>* out) {
  bool changed = false;
  for (int i = 0; i < 2; ++i) {
    Knote& k = w->knotes[i];
    if (!k.present || !k.enabled) continue;
    uint32_t wakes = i == kRead ? (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
                                : (EPOLLOUT | EPOLLHUP | EPOLLERR);
    if ((bits & wakes) == 0) continue;
    uint32_t eof = i == kRead ? (EPOLLRDHUP | EPOLLHUP | EPOLLERR) : (EPOLLHUP | EPOLLERR);
    struct kevent e;
    EV_SET(&e, static_cast<uintptr_t>(fd), i == kRead ? EVFILT_READ : EVFILT_WRITE,
           static_cast<uint16_t>(EV_ADD | k.flags | ((bits & eof) != 0 ? EV_EOF : 0)), 0,
           i == kRead ? readable_bytes(fd) : send_space(fd), k.udata);
    out->push_back(e);
    if ((k.flags & EV_ONESHOT) != 0) {
      k = Knote{};
      changed = true;
    } else if ((k.flags & EV_DISPATCH) != 0) {
      k.enabled = false;
      changed = true;
    }
  }
  if (changed) (void)sync(kq, fd, w);
}

int wait_ms(const struct timespec* timeout) {
  if (timeout == nullptr) return -1;
  long long ms =
      static_cast<long long>(timeout->tv_sec) * 1000 + (timeout->tv_nsec + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// The queue of a kqueue fd, or null with errno EBADF (a number kqueue() did not return). Call
// with g_mutex held.
Queue* find_queue(int kq) {
  auto found = g_queues.find(kq);
  if (found != g_queues.end()) return &found->second;
  errno = EBADF;
  return nullptr;
}

}  // namespace

extern "C" int kqueue(void) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return -1;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_queues[fd] = Queue{};  // a number reused after close() starts empty
  return fd;
}

extern "C" int kevent(int kq, const struct kevent* changelist, int nchanges,
                      struct kevent* eventlist, int nevents, const struct timespec* timeout) {
  if (nchanges < 0 || nevents < 0 ||
      (timeout != nullptr &&
       (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000))) {
    errno = EINVAL;
    return -1;
  }
  int out = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    Queue* queue = find_queue(kq);
    if (queue == nullptr) return -1;
    Queue& q = *queue;
    for (int i = 0; i < nchanges; ++i) {
      const struct kevent& change = changelist[i];
      int err = apply(kq, &q, change);
      if (err == 0 && (change.flags & EV_RECEIPT) == 0) continue;
      if (out == nevents) {
        if (err == 0) continue;
        errno = err;
        return -1;
      }
      eventlist[out] = change;
      eventlist[out].flags = EV_ERROR;
      eventlist[out].data = err;
      ++out;
    }
    if (out > 0) return out;
    while (out < nevents && !q.overflow.empty()) {
      eventlist[out++] = q.overflow.front();
      q.overflow.pop_front();
    }
    if (out > 0 || nevents == 0) return out;
  }
  std::vector<epoll_event> ready(static_cast<size_t>(nevents));
  int n;
  do {
    n = epoll_wait(kq, ready.data(), nevents, wait_ms(timeout));
  } while (n < 0 && errno == EINTR && timeout != nullptr && wait_ms(timeout) == 0);
  if (n < 0) return -1;
  std::lock_guard<std::mutex> lock(g_mutex);
  Queue* queue = find_queue(kq);
  if (queue == nullptr) return -1;
  Queue& q = *queue;
  std::vector<struct kevent> events;
  for (int i = 0; i < n; ++i) {
    int fd = ready[static_cast<size_t>(i)].data.fd;
    auto watched = q.fds.find(fd);
    if (watched != q.fds.end())
      translate(kq, fd, ready[static_cast<size_t>(i)].events, &watched->second, &events);
  }
  for (const struct kevent& e : events) {
    if (out < nevents) {
      eventlist[out++] = e;
    } else {
      q.overflow.push_back(e);
    }
  }
  return out;
}
