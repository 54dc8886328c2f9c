// How blocking_io's detach() gets a socket's threads out of their blocking calls without harming
// the socket (shutdown() would): it sends the thread a signal whose handler does nothing and is
// installed without SA_RESTART, so the call fails with EINTR or returns what it did so far.
//
// The signal belongs to the application first. One is chosen once per process: the first
// real-time signal from SIGRTMIN+5 (SIGURG where there are none: platform::interrupt_candidates)
// whose disposition is still the default and that the choosing thread does not block (an
// application that uses a signal sets a handler, ignores it, or blocks it to sigwait() on it). Ours
// is installed on it and keeps the default for everyone else: an instance this process did not send
// to one of its threads with pthread_kill() gets the default action (terminate), as if no handler
// were there.
#ifndef IOMUX_BLOCKING_INTERRUPT_H_
#define IOMUX_BLOCKING_INTERRUPT_H_

namespace iomux {

// Chooses the signal and installs the handler the first time; later calls return the same.
// Returns the signal, or 0 when no signal is free (detach() then reports ENOTSUP). Call it on
// Node's main thread before starting threads, which unblock it (see unblock_interrupt()).
int interrupt_signal();

// Unblocks the interrupt signal in the calling thread (a socket thread starts with every signal
// blocked).
void unblock_interrupt();

// True while the interrupt handler is still ours: an application that installed its own on the
// signal later must not receive our interrupts, and one with SA_RESTART would never let the
// blocked call return.
bool interrupt_usable();

}  // namespace iomux

#endif  // IOMUX_BLOCKING_INTERRUPT_H_
