// Windows: the platform layer (platform.h) over Winsock 2 and Win32, and the error translation of
// the POSIX shim (platform_win32_posix.h). The socket steps of socket_util.h are in
// platform_win32_sockets.cc. What Windows does not have is reported (-ENOSYS), never faked: there
// is no timer fd and no signal to interrupt a blocking thread with. The glue watches no fd here
// (engines call a waker: platform_glue.h); the wake-up notifier is a loopback socket, which
// select's watcher thread waits on.
#include <cerrno>
#include <cstring>

#include "platform.h"

#if defined(IOMUX_PLATFORM_WIN32)

#include "platform_win32_posix.h"
#include "socket_util.h"

namespace iomux {

namespace win32 {

int errno_from_system(int error) {
  switch (error) {
    case WSAEWOULDBLOCK:
    case WSA_IO_PENDING:
      return EWOULDBLOCK;
    case WSAEINTR:
    case WSA_OPERATION_ABORTED:  // == ERROR_OPERATION_ABORTED
      return ECANCELED;
    case WSAEBADF:
    case WSAENOTSOCK:
    case ERROR_INVALID_HANDLE:
      return EBADF;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
      return EACCES;
    case WSAEFAULT:
      return EFAULT;
    case WSAEINVAL:
    case ERROR_INVALID_PARAMETER:
      return EINVAL;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
      return EMFILE;
    case WSAEINPROGRESS:
    case WSAEALREADY:
      return EALREADY;
    case WSAEDESTADDRREQ:
      return EDESTADDRREQ;
    case WSAEMSGSIZE:
      return EMSGSIZE;
    case WSAEPROTOTYPE:
      return EPROTOTYPE;
    case WSAENOPROTOOPT:
      return ENOPROTOOPT;
    case WSAEPROTONOSUPPORT:
    case WSAESOCKTNOSUPPORT:
      return EPROTONOSUPPORT;
    case WSAEOPNOTSUPP:
    case WSAEPFNOSUPPORT:
      return EOPNOTSUPP;
    case WSAEAFNOSUPPORT:
      return EAFNOSUPPORT;
    case WSAEADDRINUSE:
      return EADDRINUSE;
    case WSAEADDRNOTAVAIL:
      return EADDRNOTAVAIL;
    case WSAENETDOWN:
      return ENETDOWN;
    case WSAENETUNREACH:
    case ERROR_NETWORK_UNREACHABLE:
      return ENETUNREACH;
    case WSAENETRESET:
    case ERROR_NETNAME_DELETED:
    case WSAECONNRESET:
    case WSAEDISCON:
      return ECONNRESET;
    case WSAECONNABORTED:
    case ERROR_CONNECTION_ABORTED:
      return ECONNABORTED;
    case WSAENOBUFS:
    case ERROR_NOT_ENOUGH_MEMORY:
      return ENOBUFS;
    case WSAEISCONN:
      return EISCONN;
    case WSAENOTCONN:
      return ENOTCONN;
    case WSAESHUTDOWN:
      return EPIPE;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
      return ETIMEDOUT;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
      return ECONNREFUSED;
    case WSAEHOSTUNREACH:
    case ERROR_HOST_UNREACHABLE:
      return EHOSTUNREACH;
    case ERROR_PORT_UNREACHABLE:
      return ECONNREFUSED;
    default:
      return EIO;
  }
}

}  // namespace win32

namespace platform {

bool env_is(const char* name, const char* value) {
  char buffer[256];
  DWORD n = GetEnvironmentVariableA(name, buffer, sizeof(buffer));
  return n > 0 && n < sizeof(buffer) && std::strcmp(buffer, value) == 0;
}

// The wake-up notifier is a UDP socket bound to 127.0.0.1 and connected to itself: a socket,
// which is what Winsock's select() can watch (a pipe or event it cannot), and one handle for both
// ends. signal_wake sends a byte to it, drain_wake receives until none is left.
int open_wake(WakeFds* out) {
  int fd = win32::open_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
  if (fd < 0) return fd;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  SOCKET s = win32::handle(fd);
  bool ok = ::bind(s, reinterpret_cast<const sockaddr*>(&addr), len) == 0 &&
            ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
            ::connect(s, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
  if (!ok) {
    int err = -(win32::fail_with_wsa(), errno);
    close_fd(fd);
    return err;
  }
  // A lost datagram's ICMP must not fail the next receive (it cannot happen on loopback to an
  // open port, but the option is what keeps a UDP socket's receive errors its own).
  BOOL report = FALSE;
  DWORD ignored = 0;
  (void)WSAIoctl(s, SIO_UDP_CONNRESET, &report, sizeof(report), nullptr, 0, &ignored, nullptr,
                 nullptr);
  out->read_fd = fd;
  out->write_fd = fd;
  return 0;
}

int signal_wake(int write_fd) {
  int saved = errno;
  char one = 1;
  int rc = 0;
  if (::send(win32::handle(write_fd), &one, 1, 0) != 1) {
    int error = WSAGetLastError();
    // Would block or no buffer: bytes are queued already, so the socket is readable.
    if (error != WSAEWOULDBLOCK && error != WSAENOBUFS) rc = -win32::errno_from_system(error);
  }
  errno = saved;
  return rc;
}

int drain_wake(int read_fd) {
  int saved = errno;
  char bytes[64];
  int rc = 0;
  for (;;) {
    if (::recv(win32::handle(read_fd), bytes, static_cast<int>(sizeof(bytes)), 0) >= 0) continue;
    int error = WSAGetLastError();
    if (error != WSAEWOULDBLOCK) rc = -win32::errno_from_system(error);
    break;
  }
  errno = saved;
  return rc;
}

int wake_identity(int read_fd, WakeIdentity* out) {
  int saved = errno;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  int rc = ::getsockname(win32::handle(read_fd), reinterpret_cast<sockaddr*>(&addr), &len);
  errno = saved;
  if (rc != 0 || addr.ss_family != AF_INET) return -EBADF;
  out->first = AF_INET;
  out->second = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  return 0;
}

int set_blocking(int fd, bool blocking) {
  u_long non_blocking = blocking ? 0 : 1;
  if (ioctlsocket(win32::handle(fd), FIONBIO, &non_blocking) != 0) {
    return -(win32::fail_with_wsa(), errno);
  }
  return 0;
}

int open_socket(int family, int type) {
  return win32::open_socket(family, type, type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
}

int accept_socket(int listen_fd, bool blocking) {
  SOCKET s = ::accept(win32::handle(listen_fd), nullptr, nullptr);
  if (s == INVALID_SOCKET) return -(win32::fail_with_wsa(), errno);
  win32::count_opened_socket();
  int fd = static_cast<int>(s);
  u_long non_blocking = blocking ? 0 : 1;
  if (ioctlsocket(s, FIONBIO, &non_blocking) != 0) {
    int err = -(win32::fail_with_wsa(), errno);
    close_fd(fd);
    return err;
  }
  return fd;
}

int duplicate_socket(int) { return -ENOSYS; }

// One WSARecvFrom per datagram; stops at the first that would block. A datagram longer than its
// buffer arrives cut, with MSG_TRUNC set, as on Linux. Blocking waits are not offered: no
// Windows engine has a thread that waits in a receive.
int receive_messages(int fd, MultiMessage* messages, unsigned count, bool wait_for_first) {
  if (wait_for_first) return -ENOSYS;
  for (unsigned i = 0; i < count; ++i) {
    msghdr& m = messages[i].msg_hdr;
    WSABUF buf{static_cast<ULONG>(m.msg_iov[0].iov_len), static_cast<char*>(m.msg_iov[0].iov_base)};
    DWORD received = 0;
    DWORD flags = 0;
    INT name_len = static_cast<INT>(m.msg_namelen);
    m.msg_flags = 0;
    if (WSARecvFrom(win32::handle(fd), &buf, 1, &received, &flags,
                    static_cast<sockaddr*>(m.msg_name), &name_len, nullptr, nullptr) != 0) {
      int error = WSAGetLastError();
      if (error != WSAEMSGSIZE) {
        if (i > 0) return static_cast<int>(i);
        return -win32::errno_from_system(error);
      }
      received = buf.len;
      m.msg_flags = MSG_TRUNC;
    }
    m.msg_namelen = name_len;
    messages[i].msg_len = received;
  }
  return static_cast<int>(count);
}

int send_messages(int fd, MultiMessage* messages, unsigned count, bool blocking) {
  if (blocking) return -ENOSYS;
  for (unsigned i = 0; i < count; ++i) {
    ssize_t n = sendmsg(fd, &messages[i].msg_hdr, 0);
    if (n < 0) return i > 0 ? static_cast<int>(i) : -errno;
    messages[i].msg_len = static_cast<unsigned>(n);
  }
  return static_cast<int>(count);
}

int OneShotTimer::open() { return -ENOSYS; }
void OneShotTimer::close() {}
int OneShotTimer::arm(int64_t /*ns*/) { return -ENOSYS; }
int OneShotTimer::disarm() { return -ENOSYS; }
bool OneShotTimer::consume() { return false; }

int interrupt_candidates(int* /*out*/, int /*max*/) { return 0; }
bool sent_by_own_thread(int /*code*/, long /*pid*/) { return false; }

int create_thread_unsignalled(pthread_t* out, const pthread_attr_t* attr, void* (*fn)(void*),
                              void* arg) {
  return -pthread_create(out, attr, fn, arg);
}

int set_thread_scheduling(const char* /*policy*/, int /*priority*/) { return -ENOSYS; }
// SetThreadAffinityMask exists but covers one processor group of 64 CPUs; not wired up here.
int set_thread_affinity(const int* /*cpus*/, int /*n*/) { return -ENOSYS; }
int set_other_threads_affinity(const int* /*cpus*/, int /*n*/) { return -ENOSYS; }
int thread_affinity(int* /*out*/, int /*max*/) { return -ENOSYS; }
int allowed_cpus(int* /*out*/, int /*max*/) { return -ENOSYS; }

}  // namespace platform

}  // namespace iomux

#endif  // IOMUX_PLATFORM_WIN32
