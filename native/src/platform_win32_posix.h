// Windows: the POSIX socket vocabulary the shared native core is written in (iovec, msghdr,
// sendmsg, mmsghdr, shutdown(SHUT_WR), errno), over Winsock 2. It is what lets
// stream.cc, datagram.cc, write_queue.cc and socket_options.cc compile unchanged for Windows: the
// headers in platform_win32_include/ (sys/socket.h, sys/uio.h, netinet/*.h, arpa/inet.h, poll.h)
// include this one, and the platform-specific steps themselves (creating, accepting, closing
// sockets) are in platform_win32_sockets.cc behind socket_util.h, and the platform layer
// (platform.h) in platform_win32.cc.
//
// Rules the shim relies on, which every Windows engine keeps:
// - a socket is a SOCKET value kept in an `int` (kernel handle values fit in 32 bits, as libuv and
//   Node assume too);
// - every socket is in non-blocking mode (FIONBIO), so MSG_DONTWAIT is a no-op here; Winsock never
//   raises SIGPIPE, so MSG_NOSIGNAL is one too;
// - a failed call sets errno to the CRT's POSIX value (mingw's <errno.h>, the same numbers that
//   Node reports as os.constants.errno on Windows), translated from WSAGetLastError().
#ifndef IOMUX_PLATFORM_WIN32_POSIX_H_
#define IOMUX_PLATFORM_WIN32_POSIX_H_

#ifndef _WIN32
#error "platform_win32_posix.h is for Windows builds only"
#endif

// Winsock's fd_set is an array of FD_SETSIZE SOCKETs, 64 unless defined before winsock2.h: the
// select backend holds up to this many sockets at once (its watcher's wake socket included). Any
// socket value fits; the limit is a count (on POSIX it is the fd number).
#ifndef FD_SETSIZE
#define FD_SETSIZE 1024
#endif

// clang-format off: winsock2.h must come before windows.h and mswsock.h.
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>
// clang-format on

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>

struct iovec {
  void* iov_base;
  size_t iov_len;
};

struct msghdr {
  void* msg_name;
  socklen_t msg_namelen;
  iovec* msg_iov;
  size_t msg_iovlen;
  void* msg_control;
  size_t msg_controllen;
  int msg_flags;
};

struct mmsghdr {
  msghdr msg_hdr;
  unsigned msg_len;
};

#define MSG_NOSIGNAL 0
#define MSG_DONTWAIT 0
#define MSG_WAITFORONE 0x10000
#ifndef SHUT_RD
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#endif

namespace iomux {
namespace win32 {

// The CRT errno for a Winsock or Win32 error code (WSAEWOULDBLOCK → EWOULDBLOCK, ...); EIO for
// one that has no POSIX name.
int errno_from_system(int error);

// Sets errno from WSAGetLastError() and returns -1, the POSIX failure value.
inline int fail_with_wsa() {
  errno = errno_from_system(WSAGetLastError());
  return -1;
}

// An overlapped, non-inheritable, non-blocking socket. Returns it or -errno.
int open_socket(int family, int type, int protocol);
// An overlapped, non-inheritable, non-blocking TCP socket with TCP_NODELAY, neither bound nor
// connected (AcceptEx's accept socket, ConnectEx's socket). Returns it or -errno.
int open_stream_socket(int family);

// Sockets iomux's Windows socket steps opened (open_socket, accept_socket) and close_fd has not
// closed yet, process-wide. The tests' leak check counts these: GetProcessHandleCount reports 0
// under Wine.
int open_socket_count();
// Counts a socket opened by other means than open_socket / accept_socket (none today).
void count_opened_socket();

inline SOCKET handle(int fd) { return static_cast<SOCKET>(static_cast<unsigned>(fd)); }

// At most this many buffers per vectored call; more is EINVAL (the core sends windows of 64).
constexpr size_t kMaxWsaBufs = 1024;

}  // namespace win32
}  // namespace iomux

// ---- POSIX calls over Winsock (overloads taking the int a socket is kept in) ----

inline ssize_t sendmsg(int fd, const msghdr* msg, int /*flags*/) {
  if (msg->msg_iovlen > iomux::win32::kMaxWsaBufs) {
    errno = EINVAL;
    return -1;
  }
  WSABUF bufs[64];
  WSABUF* list = bufs;
  WSABUF* heap = nullptr;
  if (msg->msg_iovlen > 64) list = heap = new (std::nothrow) WSABUF[msg->msg_iovlen];
  if (list == nullptr) {
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < msg->msg_iovlen; ++i) {
    list[i].buf = static_cast<char*>(msg->msg_iov[i].iov_base);
    list[i].len = static_cast<ULONG>(msg->msg_iov[i].iov_len);
  }
  DWORD sent = 0;
  int rc = msg->msg_name != nullptr && msg->msg_namelen > 0
               ? WSASendTo(iomux::win32::handle(fd), list, static_cast<DWORD>(msg->msg_iovlen),
                           &sent, 0, static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen,
                           nullptr, nullptr)
               : WSASend(iomux::win32::handle(fd), list, static_cast<DWORD>(msg->msg_iovlen), &sent,
                         0, nullptr, nullptr);
  delete[] heap;
  if (rc != 0) return iomux::win32::fail_with_wsa();
  return static_cast<ssize_t>(sent);
}

// send(2) and recv(2) on the int a socket is kept in. Winsock's own take a SOCKET, a char* and an
// int length, so a call with an int fd, a void* or uint8_t* buffer and a size_t length from the
// shared core resolves to these; the lengths are clamped to what one Winsock call takes.
inline ssize_t send(int fd, const void* buf, size_t len, int /*flags*/) {
  int want = len > 0x7FFFFFFF ? 0x7FFFFFFF : static_cast<int>(len);
  int n = ::send(iomux::win32::handle(fd), static_cast<const char*>(buf), want, 0);
  if (n == SOCKET_ERROR) return iomux::win32::fail_with_wsa();
  return n;
}

// The readiness engine reads a stream socket with this recv.
//
// A reset peer fails recv with WSAECONNRESET on Windows. Wine 8.0 (seen here) has its select()
// take the socket's pending error instead: recv then returns 0 as for a FIN and SO_ERROR reads 0,
// but WSAPoll still reports POLLERR, which an orderly end never sets. So an end of stream is
// checked once more and a reset reported as one, as on Windows and POSIX.
inline ssize_t recv(int fd, void* buf, size_t len, int /*flags*/) {
  SOCKET s = iomux::win32::handle(fd);
  int want = len > 0x7FFFFFFF ? 0x7FFFFFFF : static_cast<int>(len);
  int n = ::recv(s, static_cast<char*>(buf), want, 0);
  if (n == SOCKET_ERROR) return iomux::win32::fail_with_wsa();
  if (n == 0) {
    WSAPOLLFD p{};
    p.fd = s;
    p.events = POLLRDNORM;
    if (WSAPoll(&p, 1, 0) > 0 && (p.revents & POLLERR) != 0) {
      errno = ECONNRESET;
      return -1;
    }
  }
  return n;
}

inline int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  if (::setsockopt(iomux::win32::handle(fd), level, name, static_cast<const char*>(value), len) !=
      0) {
    return iomux::win32::fail_with_wsa();
  }
  return 0;
}

inline int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  if (::getsockopt(iomux::win32::handle(fd), level, name, static_cast<char*>(value), len) != 0) {
    return iomux::win32::fail_with_wsa();
  }
  return 0;
}

inline int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (::connect(iomux::win32::handle(fd), addr, len) != 0) return iomux::win32::fail_with_wsa();
  return 0;
}

inline int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  if (::getsockname(iomux::win32::handle(fd), addr, len) != 0) {
    return iomux::win32::fail_with_wsa();
  }
  return 0;
}

inline int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  if (::getpeername(iomux::win32::handle(fd), addr, len) != 0) {
    return iomux::win32::fail_with_wsa();
  }
  return 0;
}

inline int shutdown(int fd, int how) {
  if (::shutdown(iomux::win32::handle(fd), how) != 0) return iomux::win32::fail_with_wsa();
  return 0;
}

inline int poll(pollfd* fds, unsigned long count, int timeout_ms) {
  int rc = WSAPoll(fds, count, timeout_ms);
  return rc < 0 ? iomux::win32::fail_with_wsa() : rc;
}

#endif  // IOMUX_PLATFORM_WIN32_POSIX_H_
