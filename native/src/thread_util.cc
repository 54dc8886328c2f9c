#include "thread_util.h"

#include <signal.h>

#include <cerrno>
#include <climits>
#include <initializer_list>

namespace iomux {

int start_thread(void* (*fn)(void*), void* arg, size_t stack_bytes, bool detached, pthread_t* out) {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) return -rc;
  size_t minimum = static_cast<size_t>(PTHREAD_STACK_MIN);
  if (stack_bytes < minimum) stack_bytes = minimum;
  rc = pthread_attr_setstacksize(&attr, stack_bytes);
  if (rc == 0 && detached) rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (rc != 0) {
    pthread_attr_destroy(&attr);
    return -rc;
  }
  // The new thread inherits the signal mask in force here: block everything around the create.
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  // Faults stay deliverable, so crash handlers (Node's, sanitizers') still see them.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&all, sig);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pthread_t thread;
  rc = pthread_create(&thread, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) return -rc;
  if (out != nullptr) *out = thread;
  return 0;
}

}  // namespace iomux
