// Windows: the socket steps of socket_util.h over Winsock 2. Sockets are created overlapped (for
// I/O completion ports), not inheritable (the close-on-exec of Windows) and non-blocking (FIONBIO),
// so the shared core's synchronous sends never block. (socket_util.cc is the POSIX version.)
#include "platform.h"

// Guarded like every platform file, so a glob over native/src/*.cc may list it on any platform.
#if defined(IOMUX_PLATFORM_WIN32)

#include <cerrno>
#include <cwchar>

#include "platform_win32_posix.h"
#include "socket_util.h"

namespace iomux {

namespace {

// The count of open sockets is one per process, not one per addon: every iomux addon is a DLL
// with its own copy of this file, and after a runtime fallback a socket one addon opened is closed
// by another (iocp → select), which left the opener's count up and the closer's down for good. So
// the counter lives in a page-file section named after the process, which each DLL maps on first
// use; its handle and view stay for the life of the process. A section that cannot be made (the
// counter is for the tests' leak check only) falls back to this DLL's own.
LONG own_count = 0;

LONG* shared_count() {
  static LONG* const count = [] {
    wchar_t name[64];
    (void)_snwprintf(name, 64, L"Local\\iomux-open-sockets-%lu", GetCurrentProcessId());
    name[63] = L'\0';
    HANDLE section =
        CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, 0, sizeof(LONG), name);
    if (section == nullptr) return &own_count;
    void* view = MapViewOfFile(section, FILE_MAP_ALL_ACCESS, 0, 0, sizeof(LONG));
    if (view == nullptr) {
      CloseHandle(section);
      return &own_count;
    }
    return static_cast<LONG*>(view);  // a new section's pages are zero
  }();
  return count;
}

using win32::fail_with_wsa;
using win32::handle;

// Winsock is started once per process and never stopped: other addons and Node share it.
int ensure_winsock() {
  static const int started = [] {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data);
  }();
  return started == 0 ? 0 : -win32::errno_from_system(started);
}

int set_int_option(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

int fail_and_close(int fd) {
  int err = -errno;
  close_fd(fd);
  return err;
}

int set_non_blocking(int fd) {
  u_long on = 1;
  if (ioctlsocket(handle(fd), FIONBIO, &on) != 0) return -(fail_with_wsa(), errno);
  return 0;
}

// bind() with POSIX errors. A port another socket holds without sharing is WSAEACCES on Windows,
// EADDRINUSE in POSIX.
int bind_address(int fd, const sockaddr_storage& addr, socklen_t addr_len) {
  if (::bind(handle(fd), reinterpret_cast<const sockaddr*>(&addr), addr_len) == 0) return 0;
  int error = WSAGetLastError();
  return -(error == WSAEACCES ? EADDRINUSE : win32::errno_from_system(error));
}

// As socket_util.cc's open_bound. Windows has no SO_REUSEPORT: a request for it is EOPNOTSUPP.
// SO_EXCLUSIVEADDRUSE on listeners keeps another process from binding over ours (Windows'
// SO_REUSEADDR would allow that), as libuv does.
int open_bound(int type, const sockaddr_storage& addr, socklen_t addr_len, bool reuse_addr,
               bool reuse_port, bool ipv6_only) {
  if (reuse_port) return -EOPNOTSUPP;
  int fd = platform::open_socket(addr.ss_family, type);
  if (fd < 0) return fd;
  int rc = reuse_addr ? set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) : 0;
  if (rc == 0 && addr.ss_family == AF_INET6) {
    rc = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, ipv6_only ? 1 : 0);
  }
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  rc = bind_address(fd, addr, addr_len);
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  return fd;
}

}  // namespace

// An overlapped, non-inheritable, non-blocking socket.
int win32::open_socket(int family, int type, int protocol) {
  int rc = ensure_winsock();
  if (rc != 0) return rc;
  SOCKET s = WSASocketW(family, type, protocol, nullptr, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET) return -(fail_with_wsa(), errno);
  win32::count_opened_socket();
  int fd = static_cast<int>(s);
  rc = set_non_blocking(fd);
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  return fd;
}

int win32::open_socket_count() {
  return static_cast<int>(InterlockedCompareExchange(shared_count(), 0, 0));
}
void win32::count_opened_socket() { InterlockedIncrement(shared_count()); }

void close_fd(int fd) {
  int saved = errno;
  if (closesocket(handle(fd)) == 0) InterlockedDecrement(shared_count());
  errno = saved;
}

int open_listener(const ListenRequest& request) {
  // Windows' SO_REUSEADDR lets another socket steal the port; a TIME_WAIT rebind needs nothing.
  int fd = open_bound(SOCK_STREAM, request.addr, request.addr_len, /*reuse_addr=*/false,
                      request.reuse_port, request.ipv6_only);
  if (fd < 0) return fd;
  if (::listen(handle(fd), request.backlog) != 0) {
    fail_with_wsa();
    return fail_and_close(fd);
  }
  return fd;
}

int open_datagram(const UdpRequest& request) {
  int fd = open_bound(SOCK_DGRAM, request.addr, request.addr_len, request.reuse_addr,
                      request.reuse_port, request.ipv6_only);
  if (fd < 0) return fd;
  // An ICMP port-unreachable would otherwise fail the next receive with WSAECONNRESET for good.
  BOOL report = FALSE;
  DWORD ignored = 0;
  (void)WSAIoctl(handle(fd), SIO_UDP_CONNRESET, &report, sizeof(report), nullptr, 0, &ignored,
                 nullptr, nullptr);
  return fd;
}

int win32::open_stream_socket(int family) {
  int fd = win32::open_socket(family, SOCK_STREAM, IPPROTO_TCP);
  if (fd < 0) return fd;
  (void)set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  return fd;
}

int bind_local(int fd, const ConnectRequest& request) {
  return request.local_len == 0 ? 0 : bind_address(fd, request.local, request.local_len);
}

int open_connect_socket(const ConnectRequest& request) {
  int fd = win32::open_stream_socket(request.addr.ss_family);
  if (fd < 0) return fd;
  int rc = bind_local(fd, request);
  if (rc != 0) {
    close_fd(fd);
    return rc;
  }
  return fd;
}

int open_connecting(const ConnectRequest& request) {
  int fd = open_connect_socket(request);
  if (fd < 0) return fd;
  if (::connect(handle(fd), reinterpret_cast<const sockaddr*>(&request.addr), request.addr_len) !=
      0) {
    int error = WSAGetLastError();
    if (error != WSAEWOULDBLOCK) {
      errno = win32::errno_from_system(error);
      return fail_and_close(fd);
    }
  }
  return fd;
}

int accept_connection(int listen_fd) {
  int fd = platform::accept_socket(listen_fd, /*blocking=*/false);
  if (fd >= 0) (void)set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  return fd;
}

int pending_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err == 0 ? 0 : win32::errno_from_system(err);
}

ssize_t send_vectored(int fd, const iovec* bufs, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(bufs);
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n = sendmsg(fd, &msg, 0);
  return n >= 0 ? n : -errno;
}

int connect_datagram(int fd, const sockaddr_storage& to, socklen_t to_len) {
  return connect(fd, reinterpret_cast<const sockaddr*>(&to), to_len) == 0 ? 0 : -errno;
}

int socket_address(int fd, bool peer, sockaddr_storage* out, socklen_t* len) {
  *len = sizeof(*out);
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(out), len)
                : getsockname(fd, reinterpret_cast<sockaddr*>(out), len);
  return rc == 0 ? 0 : -errno;
}

// Winsock's AF_UNIX streams take no overlapped I/O on every Windows version iomux supports, so
// Unix domain sockets are refused here with a typed error rather than half served.
int unix_address(const std::string&, sockaddr_storage*, socklen_t*) { return -EAFNOSUPPORT; }
int unix_path_max() { return 0; }
bool unix_path_of(const sockaddr_storage&, socklen_t, std::string*) { return false; }

}  // namespace iomux

#endif  // IOMUX_PLATFORM_WIN32
