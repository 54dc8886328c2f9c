// Socket addresses and options as the JS side names them: text IP + port to and from a
// sockaddr, and the UDP socket options JS may set by name. Plain POSIX, no N-API.
#ifndef IOMUX_SOCKET_OPTIONS_H_
#define IOMUX_SOCKET_OPTIONS_H_

#include <sys/socket.h>

#include <string>

namespace iomux {

// Parses a numeric IPv4 or IPv6 address (no name lookup: JS resolves names first) and a port.
// False when host is not a numeric address.
bool parse_ip(const std::string& host, int port, sockaddr_storage* out, socklen_t* len);

// The numeric text, port and family (4 or 6) of an AF_INET or AF_INET6 address.
void format_ip(const sockaddr_storage& addr, std::string* text, int* port, int* family);

// Socket options JS may set by name; -EINVAL for an unknown name or a bad address. Stream
// sockets: noDelay, keepAlive, keepAliveIdle (seconds), lingerReset (1: SO_LINGER 0, so the
// close that follows sends RST), recvBufferSize, sendBufferSize.
int set_socket_option(int fd, const std::string& name, int value, const std::string& group,
                      const std::string& iface);

// SO_LINGER 0: the close that follows sends RST instead of FIN, so the peer cannot take a stream
// cut by an error for a complete one. 0 or -errno.
int reset_on_close(int fd);

// Reads an option set_socket_option knows (not the membership ones) into *value; 0 or -errno.
int get_socket_option(int fd, const std::string& name, int* value);

}  // namespace iomux

#endif  // IOMUX_SOCKET_OPTIONS_H_
