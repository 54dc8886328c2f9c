// TEST-ONLY: <sys/event.h> for Linux, so the kqueue backend compiles and runs here over a small
// kqueue emulation (kqueue_emulation.cc, on epoll). Never part of a macOS / FreeBSD build.
//
// Written from the kqueue(2) manual pages of FreeBSD and macOS. What it covers is what the kqueue
// backend uses: EVFILT_READ and EVFILT_WRITE on sockets, pipes and other pollable fds, with
// EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_ONESHOT, EV_CLEAR, EV_DISPATCH, EV_RECEIPT in the
// changelist and EV_EOF / EV_ERROR in the eventlist. Any other filter is refused with EINVAL.
// Known differences from a real kernel, on purpose:
// - EV_CLEAR is kept per fd (epoll's EPOLLET): all knotes of one fd must agree on it, else EV_ADD
//   fails with EINVAL; an edge may report the other filter of the fd again (a spurious event).
// - `data` is FIONREAD for EVFILT_READ (1 for a listening socket with a connection pending) and the
//   free send-buffer space for EVFILT_WRITE, as far as Linux tells.
#ifndef IOMUX_EMULATED_SYS_EVENT_H_
#define IOMUX_EMULATED_SYS_EVENT_H_

#include <stdint.h>
#include <time.h>

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

struct kevent {
  uintptr_t ident;
  int16_t filter;
  uint16_t flags;
  uint32_t fflags;
  intptr_t data;
  void* udata;
};

#define EV_SET(kevp, a, b, c, d, e, f) \
  do {                                 \
    struct kevent* ev_ = (kevp);       \
    ev_->ident = (a);                  \
    ev_->filter = (b);                 \
    ev_->flags = (c);                  \
    ev_->fflags = (d);                 \
    ev_->data = (e);                   \
    ev_->udata = (f);                  \
  } while (0)

#ifdef __cplusplus
extern "C" {
#endif

int kqueue(void);
int kevent(int kq, const struct kevent* changelist, int nchanges, struct kevent* eventlist,
           int nevents, const struct timespec* timeout);

#ifdef __cplusplus
}
#endif

#endif  // IOMUX_EMULATED_SYS_EVENT_H_
