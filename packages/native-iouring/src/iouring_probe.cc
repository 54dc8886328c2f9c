// io_uring availability diagnostics: backend::probe and the reasons behind a failed setup.
#include "iouring_probe.h"

#ifdef __linux__

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "iomux/engine.h"
#include "socket_util.h"

namespace iomux {
namespace uring {

namespace {

// Opcodes an engine cannot do without.
constexpr unsigned kRequiredOps[] = {IORING_OP_ACCEPT,  IORING_OP_CONNECT,      IORING_OP_RECV,
                                     IORING_OP_SENDMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD};

std::string kernel_release() {
  utsname u;
  if (uname(&u) != 0) return "?";
  return u.release;
}

std::string errno_label(int err) {
  const char* name = nullptr;
  switch (err) {
    case EPERM:
      name = "EPERM";
      break;
    case ENOSYS:
      name = "ENOSYS";
      break;
    case ENOMEM:
      name = "ENOMEM";
      break;
    case EINVAL:
      name = "EINVAL";
      break;
    case EMFILE:
      name = "EMFILE";
      break;
    case ENFILE:
      name = "ENFILE";
      break;
    case EFAULT:
      name = "EFAULT";
      break;
    case EACCES:
      name = "EACCES";
      break;
    case EOPNOTSUPP:
      name = "EOPNOTSUPP";
      break;
    default:
      break;
  }
  std::string out = name != nullptr ? name : "errno " + std::to_string(err);
  return out + " (" + std::strerror(err) + ")";
}

std::string read_sysctl(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[32] = {0};
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  close_fd(fd);
  if (n <= 0) return "";
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

}  // namespace

std::string explain_setup_error(int err) {
  std::string head = "io_uring_setup failed with " + errno_label(err) + ": ";
  std::string release = kernel_release();
  switch (err) {
    case ENOSYS:
      return head + "kernel too old or io_uring not compiled in (kernel " + release +
             "; io_uring needs Linux 5.1 and CONFIG_IO_URING=y, iomux needs 5.19+)";
    case EPERM: {
      std::string sysctl = read_sysctl("/proc/sys/kernel/io_uring_disabled");
      if (sysctl == "2") {
        return head +
               "blocked: io_uring is disabled system-wide (sysctl kernel.io_uring_disabled=2)";
      }
      if (sysctl == "1") {
        return head +
               "blocked: sysctl kernel.io_uring_disabled=1 allows io_uring only to processes with "
               "CAP_SYS_ADMIN or in the group kernel.io_uring_group, and this one is neither";
      }
      return head + "blocked by a seccomp filter (kernel.io_uring_disabled is " +
             (sysctl.empty() ? std::string("absent") : sysctl) +
             ", so not the sysctl): container runtimes' default profiles block io_uring (Docker's "
             "since 2023); allow io_uring_setup/io_uring_enter/io_uring_register or use epoll";
    }
    case ENOMEM: {
      rlimit lim{};
      std::string memlock = "?";
      if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
        memlock = lim.rlim_cur == RLIM_INFINITY ? "unlimited"
                                                : std::to_string(lim.rlim_cur / 1024) + " KiB";
      }
      return head + "RLIMIT_MEMLOCK too low for the rings (ulimit -l: " + memlock +
             "; kernels before 5.12 charge ring memory to it) or the kernel is out of memory";
    }
    case EINVAL:
      return head + "unsupported setup flags or parameters: kernel " + release +
             " is too old (iomux needs Linux 5.19+)";
    case EMFILE:
    case ENFILE:
      return head + "out of file descriptors";
    case EFAULT:
      return head + "the kernel could not read the setup parameters";
    default:
      return head + "unexpected error";
  }
}

int check_capabilities(const Ring& ring, std::string* why) {
  std::vector<bool> ops;
  int rc = ring.probe_ops(&ops);
  if (rc < 0) {
    if (why != nullptr) {
      *why = "IORING_REGISTER_PROBE failed with " + errno_label(-rc) + ": kernel " +
             kernel_release() + " is too old (iomux needs Linux 5.19+)";
    }
    return rc;
  }
  std::string missing;
  for (unsigned op : kRequiredOps) {
    if (ops[op]) continue;
    if (!missing.empty()) missing += ", ";
    missing += opcode_name(op);
  }
  if (!missing.empty()) {
    if (why != nullptr) {
      *why = "io_uring on kernel " + kernel_release() + " lacks " + missing +
             " (iomux needs Linux 5.19+)";
    }
    return -EOPNOTSUPP;
  }
  if ((ring.features() & IORING_FEAT_NODROP) == 0) {
    if (why != nullptr) {
      *why = "io_uring on kernel " + kernel_release() +
             " lacks IORING_FEAT_NODROP (completions could be lost; iomux needs Linux 5.19+)";
    }
    return -EOPNOTSUPP;
  }
  return 0;
}

}  // namespace uring

namespace backend {

using uring::BufferRing;
using uring::errno_label;
using uring::explain_setup_error;
using uring::kernel_release;
using uring::Ring;

std::string probe(int simulated_errno) {
  if (simulated_errno != 0) return explain_setup_error(simulated_errno);
  Ring ring;
  int rc = ring.init(8, 16);
  if (rc < 0) return explain_setup_error(-rc);
  std::string release = kernel_release();
  std::string missing;
  rc = uring::check_capabilities(ring, &missing);
  if (rc < 0) return missing;
  BufferRing bufs;
  rc = bufs.init(ring, 0, 1, 4096);
  if (rc < 0) {
    return "io_uring on kernel " + release +
           " cannot register a provided-buffer ring (IORING_REGISTER_PBUF_RING failed with " +
           errno_label(-rc) + "; it needs Linux 5.19+)";
  }
  ring.close();
  bufs.release();
  return "";
}

}  // namespace backend
}  // namespace iomux

#else  // !__linux__

#include <string>

#include "iomux/engine.h"

namespace iomux {
namespace backend {

std::string probe(int /*simulated_errno*/) {
  return "io_uring is a Linux kernel interface; this platform has none";
}

}  // namespace backend
}  // namespace iomux

#endif  // __linux__
