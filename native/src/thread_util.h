// Native thread start-up for engines that run I/O on threads (blocking_io) or helpers.
#ifndef IOMUX_THREAD_UTIL_H_
#define IOMUX_THREAD_UTIL_H_

#include <pthread.h>

#include <cstddef>

namespace iomux {

// Starts a detached (detached = true) or joinable thread running fn(arg), with a stack of
// stack_bytes (raised to the platform minimum) and every signal blocked except synchronous faults,
// so Node's main thread keeps receiving the process's signals. Returns 0 or -errno (EAGAIN when
// the system is out of threads).
int start_thread(void* (*fn)(void*), void* arg, size_t stack_bytes, bool detached, pthread_t* out);

}  // namespace iomux

#endif  // IOMUX_THREAD_UTIL_H_
