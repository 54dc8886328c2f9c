#include "socket_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

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

int set_socket_option(int fd, const std::string& name, int value, const std::string& group,
                      const std::string& iface) {
  int rc;
  if (name == "broadcast") {
    rc = setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &value, sizeof(value));
  } else if (name == "ttl") {
    rc = setsockopt(fd, IPPROTO_IP, IP_TTL, &value, sizeof(value));
  } else if (name == "multicastTTL") {
    rc = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &value, sizeof(value));
  } else if (name == "multicastLoopback") {
    rc = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &value, sizeof(value));
  } else if (name == "recvBufferSize") {
    rc = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value));
  } else if (name == "sendBufferSize") {
    rc = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, sizeof(value));
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
