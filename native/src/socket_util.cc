#include "socket_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "platform.h"

namespace iomux {

namespace {

int set_int_option(int fd, int level, int name, int value) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) return -errno;
  return 0;
}

int fail_and_close(int fd) {
  int err = -errno;
  close_fd(fd);
  return err;
}

}  // namespace

void close_fd(int fd) {
  int saved = errno;
  ::close(fd);
  errno = saved;
}

namespace {

// A non-blocking, close-on-exec socket of `type` with the address options set, bound.
// SO_REUSEADDR means different things per type: for TCP it only allows a rebind over TIME_WAIT
// (what every server wants, node:net sets it too); for UDP it lets a second socket bind the same
// port and share or take over its traffic, so UDP gets it only when asked for (node:dgram's
// reuseAddr), and a second bind fails with EADDRINUSE by default.
int open_bound(int type, const sockaddr_storage& addr, socklen_t addr_len, bool reuse_addr,
               bool reuse_port, bool ipv6_only) {
  int fd = platform::open_socket(addr.ss_family, type);
  if (fd < 0) return fd;
  int rc = reuse_addr ? set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) : 0;
  if (rc == 0 && reuse_port) rc = set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (rc == 0 && addr.ss_family == AF_INET6) {
    rc = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, ipv6_only ? 1 : 0);
  }
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0)
    return fail_and_close(fd);
  return fd;
}

}  // namespace

int open_listener(const ListenRequest& request) {
  int fd = open_bound(SOCK_STREAM, request.addr, request.addr_len, /*reuse_addr=*/true,
                      request.reuse_port, request.ipv6_only);
  if (fd < 0) return fd;
  if (::listen(fd, request.backlog) != 0) return fail_and_close(fd);
  return fd;
}

int open_datagram(const UdpRequest& request) {
  return open_bound(SOCK_DGRAM, request.addr, request.addr_len, request.reuse_addr,
                    request.reuse_port, request.ipv6_only);
}

int bind_local(int fd, const ConnectRequest& request) {
  if (request.local_len == 0) return 0;
  return ::bind(fd, reinterpret_cast<const sockaddr*>(&request.local), request.local_len) == 0
             ? 0
             : -errno;
}

int open_connect_socket(const ConnectRequest& request) {
  int fd = platform::open_socket(request.addr.ss_family, SOCK_STREAM);
  if (fd < 0) return fd;
  // TCP_NODELAY is a TCP option: a Unix domain stream refuses it and needs none.
  int rc = request.addr.ss_family == AF_UNIX ? 0 : set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (rc == 0) rc = bind_local(fd, request);
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  return fd;
}

int open_connecting(const ConnectRequest& request) {
  int fd = open_connect_socket(request);
  if (fd < 0) return fd;
  while (::connect(fd, reinterpret_cast<const sockaddr*>(&request.addr), request.addr_len) != 0) {
    if (errno == EINTR) continue;
    if (errno == EINPROGRESS) break;
    return fail_and_close(fd);
  }
  return fd;
}

int accept_connection(int listen_fd) {
  int fd = platform::accept_socket(listen_fd, /*blocking=*/false);
  // Loopback and AF_UNIX-like peers may refuse the option; the connection is still usable.
  if (fd >= 0) (void)set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  return fd;
}

int pending_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

ssize_t send_vectored(int fd, const iovec* bufs, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(bufs);
  msg.msg_iovlen = static_cast<size_t>(count);
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, platform::kSendNoSignal);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return -errno;
  }
}

int connect_datagram(int fd, const sockaddr_storage& to, socklen_t to_len) {
  return ::connect(fd, reinterpret_cast<const sockaddr*>(&to), to_len) == 0 ? 0 : -errno;
}

int socket_address(int fd, bool peer, sockaddr_storage* out, socklen_t* len) {
  *len = sizeof(*out);
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(out), len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(out), len);
  return rc == 0 ? 0 : -errno;
}

int unix_path_max() { return static_cast<int>(sizeof(sockaddr_un::sun_path)) - 1; }

int unix_address(const std::string& path, sockaddr_storage* out, socklen_t* len) {
  if (path.empty()) return -EINVAL;
  if (path.size() > static_cast<size_t>(unix_path_max())) return -ENAMETOOLONG;
  std::memset(out, 0, sizeof(*out));
  auto* un = reinterpret_cast<sockaddr_un*>(out);
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  // An abstract name (leading NUL) is exactly its bytes; a file path also counts its NUL.
  size_t used = path[0] == '\0' ? path.size() : path.size() + 1;
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + used);
  return 0;
}

bool unix_path_of(const sockaddr_storage& addr, socklen_t len, std::string* path) {
  if (addr.ss_family != AF_UNIX) return false;
  const auto* un = reinterpret_cast<const sockaddr_un*>(&addr);
  size_t offset = offsetof(sockaddr_un, sun_path);
  size_t bytes = len > offset ? static_cast<size_t>(len) - offset : 0;
  if (bytes > sizeof(un->sun_path)) bytes = sizeof(un->sun_path);
  // A file path ends at its NUL; an abstract name is all `bytes` (it starts with NUL).
  if (bytes > 0 && un->sun_path[0] != '\0') bytes = strnlen(un->sun_path, bytes);
  path->assign(un->sun_path, bytes);
  return true;
}

}  // namespace iomux
