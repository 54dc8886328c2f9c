#include "thread_util.h"

#include <cerrno>

#include "platform.h"

namespace iomux {

int start_thread(void* (*fn)(void*), void* arg, size_t stack_bytes, bool detached, pthread_t* out) {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) return -rc;
  size_t minimum = platform::min_thread_stack();
  if (stack_bytes < minimum) stack_bytes = minimum;
  rc = pthread_attr_setstacksize(&attr, stack_bytes);
  if (rc == 0 && detached) rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (rc != 0) {
    pthread_attr_destroy(&attr);
    return -rc;
  }
  pthread_t thread;
  rc = platform::create_thread_unsignalled(&thread, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc != 0) return rc;
  if (out != nullptr) *out = thread;
  return 0;
}

}  // namespace iomux
