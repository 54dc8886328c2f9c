// Plain POSIX socket steps every Unix backend shares. All return -errno on failure.
#ifndef IOMUX_SOCKET_UTIL_H_
#define IOMUX_SOCKET_UTIL_H_

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <string>

#include "iomux/engine.h"

namespace iomux {

// Non-blocking, close-on-exec listening socket, bound and listening.
int open_listener(const ListenRequest& request);
// Non-blocking, close-on-exec UDP socket, bound.
int open_datagram(const UdpRequest& request);
// Binds `fd` to request.local when the request has one (else does nothing): the one place every
// engine's connect takes its local address from. -errno as bind(2) gives it (EADDRINUSE,
// EADDRNOTAVAIL, EINVAL or EAFNOSUPPORT for an address of the other family).
int bind_local(int fd, const ConnectRequest& request);
// Non-blocking, close-on-exec stream socket for request.addr's family, TCP_NODELAY set (not on
// AF_UNIX), bound by bind_local(); no connect started (a completion engine submits its own).
int open_connect_socket(const ConnectRequest& request);
// open_connect_socket() with a non-blocking connect in progress (or done).
int open_connecting(const ConnectRequest& request);
// Accepts one connection as non-blocking, close-on-exec, TCP_NODELAY.
int accept_connection(int listen_fd);
// The pending error of a socket (SO_ERROR), as a positive errno or 0.
int pending_error(int fd);
// sendmsg without SIGPIPE. Returns bytes sent.
ssize_t send_vectored(int fd, const iovec* bufs, int count);
// UDP connect(): sets the default peer (it never blocks).
int connect_datagram(int fd, const sockaddr_storage& to, socklen_t to_len);
int socket_address(int fd, bool peer, sockaddr_storage* out, socklen_t* len);
// A Unix domain socket address for `path` (a leading NUL names Linux's abstract namespace).
// -ENAMETOOLONG when the path does not fit (see unix_path_max()), -EINVAL for an empty path,
// -EAFNOSUPPORT where the platform has no AF_UNIX streams here (Windows).
int unix_address(const std::string& path, sockaddr_storage* out, socklen_t* len);
// The longest path unix_address() takes, in bytes (sun_path less its NUL); 0 without AF_UNIX.
int unix_path_max();
// The path of an AF_UNIX address (empty for an unnamed socket, such as a connecting client);
// false when `addr` is not AF_UNIX.
bool unix_path_of(const sockaddr_storage& addr, socklen_t len, std::string* path);
// close() that keeps errno untouched and ignores EINTR (the fd is gone either way on Linux).
void close_fd(int fd);

}  // namespace iomux

#endif  // IOMUX_SOCKET_UTIL_H_
