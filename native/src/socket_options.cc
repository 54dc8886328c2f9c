#include "socket_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <cstring>

namespace iomux {

bool parse_ip(const std::string& host, int port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void format_ip(const sockaddr_storage& addr, std::string* text, int* port, int* family) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    *port = ntohs(v6->sin6_port);
    *family = 6;
  } else {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    *port = ntohs(v4->sin_port);
    *family = 4;
  }
  *text = buf;
}

namespace {

#if defined(TCP_KEEPIDLE)
constexpr int kKeepAliveIdle = TCP_KEEPIDLE;
#elif defined(TCP_KEEPALIVE)  // macOS names the idle time before the first probe TCP_KEEPALIVE
constexpr int kKeepAliveIdle = TCP_KEEPALIVE;
#else  // no such option in these headers (mingw): setsockopt refuses it with an error
constexpr int kKeepAliveIdle = -1;
#endif

// The integer options JS names, and where each lives.
struct IntOption {
  const char* name;
  int level;
  int option;
};
constexpr IntOption kIntOptions[] = {
    {"broadcast", SOL_SOCKET, SO_BROADCAST},
    {"ttl", IPPROTO_IP, IP_TTL},
    {"multicastTTL", IPPROTO_IP, IP_MULTICAST_TTL},
    {"multicastLoopback", IPPROTO_IP, IP_MULTICAST_LOOP},
    {"recvBufferSize", SOL_SOCKET, SO_RCVBUF},
    {"sendBufferSize", SOL_SOCKET, SO_SNDBUF},
    {"noDelay", IPPROTO_TCP, TCP_NODELAY},
    {"keepAlive", SOL_SOCKET, SO_KEEPALIVE},
    {"keepAliveIdle", IPPROTO_TCP, kKeepAliveIdle},
};

const IntOption* int_option(const std::string& name) {
  for (const IntOption& entry : kIntOptions) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

}  // namespace

int get_socket_option(int fd, const std::string& name, int* value) {
  if (name == "lingerReset") {
    linger current{};
    socklen_t len = sizeof(current);
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &current, &len) != 0) return -errno;
    *value = current.l_onoff != 0 && current.l_linger == 0 ? 1 : 0;
    return 0;
  }
  const IntOption* entry = int_option(name);
  if (entry == nullptr) return -EINVAL;
  // Boolean options read back as any non-zero value (BSDs return the flag's bit): normalise.
  socklen_t len = sizeof(*value);
  if (getsockopt(fd, entry->level, entry->option, value, &len) != 0) return -errno;
  if (name == "noDelay" || name == "keepAlive") *value = *value != 0 ? 1 : 0;
  return 0;
}

int reset_on_close(int fd) {
  linger reset{};  // field types differ by platform (int, u_short)
  reset.l_onoff = 1;
  reset.l_linger = 0;
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) == 0 ? 0 : -errno;
}

int set_socket_option(int fd, const std::string& name, int value, const std::string& group,
                      const std::string& iface) {
  int rc;
  if (const IntOption* entry = int_option(name)) {
    rc = setsockopt(fd, entry->level, entry->option, &value, sizeof(value));
  } else if (name == "lingerReset") {
    if (value != 0) return reset_on_close(fd);
    linger plain{};  // field types differ by platform (int, u_short)
    rc = setsockopt(fd, SOL_SOCKET, SO_LINGER, &plain, sizeof(plain));
  } else if (name == "addMembership" || name == "dropMembership") {
    ip_mreq request{};
    if (inet_pton(AF_INET, group.c_str(), &request.imr_multiaddr) != 1) return -EINVAL;
    request.imr_interface.s_addr = htonl(INADDR_ANY);
    if (!iface.empty() && inet_pton(AF_INET, iface.c_str(), &request.imr_interface) != 1) {
      return -EINVAL;
    }
    int option = name == "addMembership" ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP;
    rc = setsockopt(fd, IPPROTO_IP, option, &request, sizeof(request));
  } else {
    return -EINVAL;
  }
  return rc == 0 ? 0 : -errno;
}

}  // namespace iomux
