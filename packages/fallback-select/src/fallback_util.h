// Kept while blocking_io still includes it: the helpers moved to native/src (notifier.h,
// thread_util.h), where every engine can use them.
#ifndef IOMUX_FALLBACK_UTIL_H_
#define IOMUX_FALLBACK_UTIL_H_

#include "notifier.h"
#include "thread_util.h"

#endif  // IOMUX_FALLBACK_UTIL_H_
