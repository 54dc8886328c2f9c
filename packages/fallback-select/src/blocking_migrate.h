// blocking_io's side of the runtime fallback: handing a socket to another engine (detach) and
// taking one over (adopt). Internal to the blocking_io addon.
#ifndef IOMUX_BLOCKING_MIGRATE_H_
#define IOMUX_BLOCKING_MIGRATE_H_

#include "blocking_sock.h"
#include "iomux/engine.h"

namespace iomux {
namespace blocking {

// Engine::detach for s. Its threads are interrupted out of their blocking calls (see
// blocking_interrupt.h) and waited for; what they completed is accounted for: bytes read go out
// as undelivered, bytes sent are gone from the queue, an accepted connection nobody saw yet is
// closed (its peer sees a reset). The wait is short: the threads only have to return from a
// system call. A socket with an error not yet delivered is not handed over: its -errno is
// returned. On success s is closing and no longer owns its fd (now non-blocking, in out->fd).
int hand_over(Sock& s, DetachedSocket* out);

// Engine::adopt after s was made (its fd blocking, its slots reserved, its id given): restores
// what travelled with the socket and starts its threads. They touch the fd only once all of
// them started (s->attached), so on failure they are waited for (they are only parked on a
// condvar) and the fd goes back to the caller untouched. Returns 0 or -errno.
int start_adopted(const SockRef& s, const DetachedSocket& socket);

}  // namespace blocking
}  // namespace iomux

#endif  // IOMUX_BLOCKING_MIGRATE_H_
