// The kqueue emulation (emulation/kqueue_emulation.cc) against the kqueue(2) manual pages of
// FreeBSD and macOS, case by case. Linux only; run by scripts/check-kqueue.mjs:
//   g++ -std=c++17 -Iemulation test/emulation_test.cc emulation/kqueue_emulation.cc && ./a.out
#include <poll.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                   \
    }                                                                               \
  } while (0)

void* tag(long v) { return reinterpret_cast<void*>(v); }

struct Pair {
  int a = -1;
  int b = -1;
  Pair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) std::abort();
    a = fds[0];
    b = fds[1];
  }
  ~Pair() {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
  }
};

int change(int kq, int fd, int16_t filter, uint16_t flags, void* udata = nullptr) {
  struct kevent c;
  EV_SET(&c, static_cast<uintptr_t>(fd), filter, flags, 0, 0, udata);
  return kevent(kq, &c, 1, nullptr, 0, nullptr);
}

int drain(int kq, struct kevent* out, int max) {
  timespec zero{0, 0};
  return kevent(kq, nullptr, 0, out, max, &zero);
}

void test_errors_in_changelist() {
  int kq = kqueue();
  CHECK(kq >= 0);
  Pair p;
  struct kevent c[3];
  struct kevent out[4];
  timespec zero{0, 0};
  // EV_DELETE of a knote that does not exist: ENOENT, as an EV_ERROR entry when there is room...
  EV_SET(&c[0], p.a, EVFILT_READ, EV_DELETE, 0, 0, nullptr);
  CHECK(kevent(kq, c, 1, out, 4, &zero) == 1);
  CHECK((out[0].flags & EV_ERROR) != 0 && out[0].data == ENOENT);
  CHECK(out[0].ident == static_cast<uintptr_t>(p.a) && out[0].filter == EVFILT_READ);
  // ...else kevent() fails with it.
  errno = 0;
  CHECK(kevent(kq, c, 1, nullptr, 0, nullptr) == -1 && errno == ENOENT);
  // EV_ENABLE / EV_DISABLE of a missing knote: ENOENT too.
  CHECK(change(kq, p.a, EVFILT_READ, EV_ENABLE) == -1 && errno == ENOENT);
  // An ident that is no open fd: EBADF. An unknown filter: EINVAL.
  CHECK(change(kq, 100000, EVFILT_READ, EV_ADD) == -1 && errno == EBADF);
  CHECK(change(kq, p.a, -42, EV_ADD) == -1 && errno == EINVAL);
  // No room for an error: the call fails at it and later changes are not applied.
  EV_SET(&c[0], 100000, EVFILT_READ, EV_ADD, 0, 0, nullptr);
  EV_SET(&c[1], p.a, EVFILT_READ, EV_ADD, 0, 0, tag(1));
  CHECK(kevent(kq, c, 2, nullptr, 0, nullptr) == -1 && errno == EBADF);
  CHECK(change(kq, p.a, EVFILT_READ, EV_DELETE) == -1 && errno == ENOENT);
  // With room, every change is applied, errors are returned, and no pending event is drained.
  CHECK(write(p.b, "x", 1) == 1);
  EV_SET(&c[0], 100000, EVFILT_READ, EV_ADD, 0, 0, nullptr);
  EV_SET(&c[1], p.a, EVFILT_READ, EV_ADD, 0, 0, tag(1));
  CHECK(kevent(kq, c, 2, out, 4, &zero) == 1);
  CHECK((out[0].flags & EV_ERROR) != 0 && out[0].data == EBADF);
  CHECK(drain(kq, out, 4) == 1 && out[0].udata == tag(1) && out[0].filter == EVFILT_READ);
  close(kq);
}

void test_receipt() {
  int kq = kqueue();
  Pair p;
  CHECK(write(p.b, "hello", 5) == 5);
  struct kevent c[2];
  struct kevent out[4];
  timespec zero{0, 0};
  EV_SET(&c[0], p.a, EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, tag(7));
  EV_SET(&c[1], p.a, EVFILT_WRITE, EV_ADD | EV_RECEIPT, 0, 0, tag(8));
  // Each change answers with EV_ERROR and data 0; pending events stay pending.
  CHECK(kevent(kq, c, 2, out, 4, &zero) == 2);
  CHECK((out[0].flags & EV_ERROR) != 0 && out[0].data == 0 && out[0].udata == tag(7));
  CHECK((out[1].flags & EV_ERROR) != 0 && out[1].data == 0 && out[1].udata == tag(8));
  CHECK(drain(kq, out, 4) == 2);
  close(kq);
}

void test_level_triggered_and_data() {
  int kq = kqueue();
  Pair p;
  CHECK(change(kq, p.a, EVFILT_READ, EV_ADD, tag(3)) == 0);
  struct kevent out[4];
  CHECK(drain(kq, out, 4) == 0);
  CHECK(write(p.b, "hello", 5) == 5);
  // data: bytes waiting to be read; reported again and again while they wait.
  for (int round = 0; round < 2; ++round) {
    CHECK(drain(kq, out, 4) == 1);
    CHECK(out[0].filter == EVFILT_READ && out[0].data == 5 && out[0].udata == tag(3));
    CHECK((out[0].flags & EV_EOF) == 0);
  }
  char buf[8];
  CHECK(read(p.a, buf, sizeof(buf)) == 5);
  CHECK(drain(kq, out, 4) == 0);
  // EV_ADD again modifies the knote (new udata), it adds no second one.
  CHECK(change(kq, p.a, EVFILT_READ, EV_ADD, tag(4)) == 0);
  CHECK(write(p.b, "a", 1) == 1);
  CHECK(drain(kq, out, 4) == 1 && out[0].udata == tag(4));
  // EVFILT_WRITE: writable with room in the send buffer (data > 0).
  CHECK(change(kq, p.a, EVFILT_WRITE, EV_ADD, tag(5)) == 0);
  int n = drain(kq, out, 4);
  CHECK(n == 2);
  bool saw_write = false;
  for (int i = 0; i < n; ++i) {
    if (out[i].filter == EVFILT_WRITE) saw_write = out[i].data > 0 && out[i].udata == tag(5);
  }
  CHECK(saw_write);
  close(kq);
}

void test_clear_oneshot_dispatch_disable() {
  int kq = kqueue();
  struct kevent out[4];
  char buf[16];
  {
    // EV_CLEAR: reported once per change of state.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_READ, EV_ADD | EV_CLEAR) == 0);
    CHECK(write(p.b, "ab", 2) == 2);
    CHECK(drain(kq, out, 4) == 1);
    CHECK(drain(kq, out, 4) == 0);
    CHECK(write(p.b, "c", 1) == 1);
    CHECK(drain(kq, out, 4) == 1 && out[0].data == 3);
    // All knotes of one fd agree on EV_CLEAR here (a documented limit of the emulation).
    CHECK(change(kq, p.a, EVFILT_WRITE, EV_ADD) == -1 && errno == EINVAL);
  }
  {
    // EV_ONESHOT: one event, then the knote is gone.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_READ, EV_ADD | EV_ONESHOT) == 0);
    CHECK(write(p.b, "a", 1) == 1);
    CHECK(drain(kq, out, 4) == 1 && (out[0].flags & EV_ONESHOT) != 0);
    CHECK(drain(kq, out, 4) == 0);
    CHECK(change(kq, p.a, EVFILT_READ, EV_DELETE) == -1 && errno == ENOENT);
  }
  {
    // EV_DISPATCH: one event, then disabled until EV_ENABLE.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_READ, EV_ADD | EV_DISPATCH) == 0);
    CHECK(write(p.b, "a", 1) == 1);
    CHECK(drain(kq, out, 4) == 1);
    CHECK(drain(kq, out, 4) == 0);
    CHECK(change(kq, p.a, EVFILT_READ, EV_ENABLE) == 0);
    CHECK(drain(kq, out, 4) == 1);
  }
  {
    // EV_DISABLE keeps the knote but reports nothing; EV_ADD | EV_DISABLE adds it disabled.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_READ, EV_ADD | EV_DISABLE) == 0);
    CHECK(write(p.b, "a", 1) == 1);
    CHECK(drain(kq, out, 4) == 0);
    CHECK(change(kq, p.a, EVFILT_READ, EV_ENABLE) == 0);
    CHECK(drain(kq, out, 4) == 1);
    CHECK(change(kq, p.a, EVFILT_READ, EV_DISABLE) == 0);
    CHECK(drain(kq, out, 4) == 0);
    CHECK(change(kq, p.a, EVFILT_READ, EV_DELETE) == 0);
    CHECK(change(kq, p.a, EVFILT_READ, EV_DELETE) == -1 && errno == ENOENT);
    CHECK(read(p.a, buf, sizeof(buf)) == 1);
  }
  close(kq);
}

void test_eof() {
  int kq = kqueue();
  struct kevent out[4];
  {
    // The peer shuts its write side: EVFILT_READ with EV_EOF, data = what is still unread.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_READ, EV_ADD) == 0);
    CHECK(write(p.b, "xy", 2) == 2);
    CHECK(shutdown(p.b, SHUT_WR) == 0);
    CHECK(drain(kq, out, 4) == 1);
    CHECK((out[0].flags & EV_EOF) != 0 && out[0].data == 2);
  }
  {
    // The peer is gone: EVFILT_WRITE with EV_EOF.
    Pair p;
    CHECK(change(kq, p.a, EVFILT_WRITE, EV_ADD) == 0);
    close(p.b);
    p.b = -1;
    CHECK(drain(kq, out, 4) == 1);
    CHECK(out[0].filter == EVFILT_WRITE && (out[0].flags & EV_EOF) != 0);
  }
  close(kq);
}

void test_close_drops_knotes() {
  int kq = kqueue();
  struct kevent out[4];
  Pair first;
  int number = first.a;
  CHECK(change(kq, first.a, EVFILT_READ, EV_ADD, tag(1)) == 0);
  close(first.a);
  first.a = -1;
  // The same number, another file: no knote of the old one applies to it.
  Pair second;
  int moved = dup2(second.a, number);
  CHECK(moved == number);
  CHECK(write(second.b, "a", 1) == 1);
  CHECK(drain(kq, out, 4) == 0);
  CHECK(change(kq, number, EVFILT_READ, EV_DELETE) == -1 && errno == ENOENT);
  close(number);
  // EV_DELETE on a closed fd: EBADF.
  CHECK(change(kq, number, EVFILT_READ, EV_DELETE) == -1 && errno == EBADF);
  close(kq);
}

void test_wait_and_pollable_fd() {
  int kq = kqueue();
  Pair p;
  struct kevent out[4];
  CHECK(change(kq, p.a, EVFILT_READ, EV_ADD) == 0);
  // A timeout with nothing ready returns 0 once it passed.
  timespec wait{0, 30 * 1000 * 1000};
  auto start = std::chrono::steady_clock::now();
  CHECK(kevent(kq, nullptr, 0, out, 4, &wait) == 0);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(25));
  // The kqueue fd itself polls readable while an event is pending (libuv watches it so).
  pollfd pfd{kq, POLLIN, 0};
  CHECK(poll(&pfd, 1, 0) == 0);
  CHECK(write(p.b, "a", 1) == 1);
  CHECK(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN) != 0);
  // More events than eventlist slots: the rest come with the next call.
  Pair q;
  CHECK(change(kq, q.a, EVFILT_READ, EV_ADD) == 0);
  CHECK(write(q.b, "a", 1) == 1);
  CHECK(drain(kq, out, 1) == 1);
  CHECK(drain(kq, out, 1) == 1);
  // Invalid arguments: EINVAL; a number that is no kqueue: EBADF.
  timespec bad{0, 1000000000};
  CHECK(kevent(kq, nullptr, 0, out, 4, &bad) == -1 && errno == EINVAL);
  CHECK(kevent(p.a, nullptr, 0, out, 4, nullptr) == -1 && errno == EBADF);
  close(kq);
}

}  // namespace

int main() {
  test_errors_in_changelist();
  test_receipt();
  test_level_triggered_and_data();
  test_clear_oneshot_dispatch_disable();
  test_eof();
  test_close_drops_knotes();
  test_wait_and_pollable_fd();
  if (failures != 0) {
    std::fprintf(stderr, "kqueue emulation: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("kqueue emulation: every man-page case passed\n");
  return 0;
}
