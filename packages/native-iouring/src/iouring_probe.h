// io_uring availability: whether this kernel has what the engine needs, and in words why not.
// The engine's init() and backend::probe() share check_capabilities, so the probe's verdict and
// what the engine actually requires cannot drift apart.
#ifndef IOMUX_IOURING_IOURING_PROBE_H_
#define IOMUX_IOURING_IOURING_PROBE_H_

#ifdef __linux__

#include <string>

#include "uring.h"

namespace iomux {
namespace uring {

// 0 when the ring has every opcode and feature the engine relies on; else -errno (-EOPNOTSUPP
// for a missing opcode or feature, or IORING_REGISTER_PROBE's error) and, when `why` is not
// null, a sentence naming what is missing and the kernel release.
int check_capabilities(const Ring& ring, std::string* why);

// Why io_uring_setup failed with `err` (a positive errno), with the likely cause on this system:
// kernel too old, sysctl or seccomp, RLIMIT_MEMLOCK, out of fds.
std::string explain_setup_error(int err);

}  // namespace uring
}  // namespace iomux

#endif  // __linux__

#endif  // IOMUX_IOURING_IOURING_PROBE_H_
