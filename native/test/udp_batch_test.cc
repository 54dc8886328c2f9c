// Engine-level check of Engine::udp_send_batch, which no JS API reaches yet (the N-API glue has
// no call for it). scripts/ci-native-checks.sh links this file with one backend's sources at a
// time, under ASan and UBSan, and runs it: exit status 0 means every check held.
//
// Checks, on the backend linked in: a batch of 100 datagrams goes out in order; with every send
// queued (IOMUX_FAULT_UDP_QUEUE=1), a batch stops at the 1 MiB bound with ENOBUFS and what was
// taken arrives in order; a datagram the kernel refuses ends the batch with its errno; queued
// datagrams the kernel refuses while the event batch is full each still get their SEND_ERROR.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "iomux/engine.h"

namespace {

using iomux::DatagramBatchResult;
using iomux::Engine;
using iomux::EventSink;
using iomux::OutgoingDatagram;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED (%s): %s\n", iomux::backend::kName, what.c_str());
    ++failures;
  }
}

sockaddr_storage loopback(uint16_t port) {
  sockaddr_storage addr{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

int open_udp(Engine* engine) {
  iomux::UdpRequest request;
  request.addr = loopback(0);
  request.addr_len = sizeof(sockaddr_in);
  request.max_datagram = 65536;
  return engine->udp_open(request);
}

uint16_t port_of(Engine* engine, int id) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (engine->address(id, false, &addr, &len) != 0) return 0;
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

// Datagram `index` of a numbered stream: the index in its first 4 bytes, then bytes from it.
std::vector<uint8_t> numbered(uint32_t index, size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(index * 31 + i);
  std::memcpy(bytes.data(), &index, sizeof(index));
  return bytes;
}

// Polls until `want` datagrams reached socket `id` (or 5 s passed); returns their payloads.
std::vector<std::vector<uint8_t>> receive(Engine* engine, int id, size_t want) {
  constexpr int kCapacity = 1024;
  std::vector<int32_t> events(kCapacity * iomux::kEventInts);
  std::vector<uint8_t> slab(4 * 1024 * 1024);
  EventSink sink;
  sink.events = events.data();
  sink.capacity = kCapacity;
  sink.slab = slab.data();
  sink.slab_capacity = slab.size();
  std::vector<std::vector<uint8_t>> got;
  for (int round = 0; round < 500 && got.size() < want; ++round) {
    pollfd wait{engine->wait_fd(), POLLIN, 0};
    (void)::poll(&wait, 1, 10);
    sink.reset();
    int n = engine->poll(&sink);
    check(n >= 0, "poll() failed");
    for (int i = 0; i < n; ++i) {
      const int32_t* e = sink.events + static_cast<ptrdiff_t>(i) * iomux::kEventInts;
      if (e[0] != iomux::kEventDatagram || e[1] != id) continue;
      const uint8_t* payload = sink.slab + e[2] + sizeof(iomux::DatagramHeader);
      got.emplace_back(payload, payload + e[3]);
    }
  }
  return got;
}

// Polls with room for only a few events per batch until `want` SEND_ERRORs for `id` arrived (or
// 500 rounds passed); returns how many did and checks each carries `errno_expected`.
size_t send_errors(Engine* engine, int id, size_t want, int errno_expected) {
  constexpr int kCapacity = iomux::kMaxEventsPerSocket + 2;
  std::vector<int32_t> events(kCapacity * iomux::kEventInts);
  std::vector<uint8_t> slab(64 * 1024);
  EventSink sink;
  sink.events = events.data();
  sink.capacity = kCapacity;
  sink.slab = slab.data();
  sink.slab_capacity = slab.size();
  size_t got = 0;
  for (int round = 0; round < 500 && got < want; ++round) {
    pollfd wait{engine->wait_fd(), POLLIN, 0};
    (void)::poll(&wait, 1, 10);
    sink.reset();
    int n = engine->poll(&sink);
    check(n >= 0, "poll() failed");
    for (int i = 0; i < n; ++i) {
      const int32_t* e = sink.events + static_cast<ptrdiff_t>(i) * iomux::kEventInts;
      if (e[0] != iomux::kEventSendError || e[1] != id) continue;
      check(e[2] == errno_expected, "SEND_ERROR errno " + std::to_string(e[2]));
      ++got;
    }
  }
  return got;
}

struct Batch {
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<iovec> iov;
  std::vector<OutgoingDatagram> datagrams;

  Batch(uint32_t first, size_t count, size_t size, const sockaddr_storage* to) {
    for (size_t i = 0; i < count; ++i) {
      payloads.push_back(numbered(first + static_cast<uint32_t>(i), size));
    }
    for (auto& p : payloads) iov.push_back(iovec{p.data(), p.size()});
    for (auto& v : iov) datagrams.push_back(OutgoingDatagram{to, sizeof(sockaddr_in), &v, 1});
  }
};

void expect_in_order(const std::vector<std::vector<uint8_t>>& got, const Batch& sent, size_t count,
                     const std::string& what) {
  check(got.size() == count, what + ": " + std::to_string(got.size()) + " of " +
                                 std::to_string(count) + " datagrams arrived");
  for (size_t i = 0; i < got.size() && i < count; ++i) {
    check(got[i] == sent.payloads[i], what + ": datagram " + std::to_string(i) + " differs");
  }
}

}  // namespace

int main() {
  int error = 0;
  iomux::EngineConfig config;
  std::unique_ptr<Engine> engine = iomux::backend::create(config, &error);
  if (!engine) {
    std::fprintf(stderr, "%s: cannot run here (%s)\n", iomux::backend::kName,
                 std::strerror(-error));
    return 1;
  }
  int receiver = open_udp(engine.get());
  int sender = open_udp(engine.get());
  check(receiver >= 0 && sender >= 0, "udp_open");
  // Room for a whole queued batch (17 × 60000 bytes) arriving at once.
  int rcvbuf = 8 * 1024 * 1024;
  check(
      setsockopt(engine->socket_fd(receiver), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0,
      "SO_RCVBUF");
  sockaddr_storage to = loopback(port_of(engine.get(), receiver));

  // 100 datagrams in one call: sendmmsg takes them 32 at a time, nothing is queued.
  Batch hundred(0, 100, 200, &to);
  DatagramBatchResult result;
  int rc = engine->udp_send_batch(sender, hundred.datagrams.data(), 100, &result);
  check(rc == 0 && result.taken == 100 && result.queued == 0 && result.error == 0,
        "a batch of 100 is sent at once");
  expect_in_order(receive(engine.get(), receiver, 100), hundred, 100, "batch of 100");

  // Every send queued: 17 of 20 datagrams of 60000 bytes fit in the 1 MiB bound.
  setenv("IOMUX_FAULT_UDP_QUEUE", "1", 1);
  int queueing = open_udp(engine.get());
  unsetenv("IOMUX_FAULT_UDP_QUEUE");
  Batch big(0, 20, 60000, &to);
  rc = engine->udp_send_batch(queueing, big.datagrams.data(), 20, &result);
  check(rc == 0 && result.taken == 17 && result.queued == 17 && result.error == ENOBUFS,
        "the queue bound stops a batch with ENOBUFS (taken " + std::to_string(result.taken) +
            ", error " + std::to_string(result.error) + ")");
  expect_in_order(receive(engine.get(), receiver, 17), big, 17, "queued batch");

  // The broadcast address without SO_BROADCAST: the kernel refuses the second datagram.
  sockaddr_storage broadcast = to;
  reinterpret_cast<sockaddr_in*>(&broadcast)->sin_addr.s_addr = htonl(0x7FFFFFFF);
  Batch refused(0, 3, 100, &to);
  refused.datagrams[1].to = &broadcast;
  rc = engine->udp_send_batch(sender, refused.datagrams.data(), 3, &result);
  check(rc == 0 && result.taken == 1 && result.error == EACCES,
        "a refused datagram ends the batch with its errno");
  expect_in_order(receive(engine.get(), receiver, 1), refused, 1, "batch before the refusal");

  // 40 queued datagrams the kernel refuses, flushed into batches with room for a few events:
  // every refusal is reported, spread over later batches.
  setenv("IOMUX_FAULT_UDP_QUEUE", "1", 1);
  int refusing = open_udp(engine.get());
  unsetenv("IOMUX_FAULT_UDP_QUEUE");
  Batch doomed(0, 40, 100, &broadcast);
  rc = engine->udp_send_batch(refusing, doomed.datagrams.data(), 40, &result);
  check(rc == 0 && result.taken == 40 && result.queued == 40, "40 refused datagrams queued");
  size_t reported = send_errors(engine.get(), refusing, 40, EACCES);
  check(reported == 40, "every queued refusal reported: " + std::to_string(reported) + " of 40");

  rc = engine->udp_send_batch(12345, hundred.datagrams.data(), 1, &result);
  check(rc == -EBADF, "an unknown id is EBADF");

  std::printf("%s: udp_send_batch %s\n", iomux::backend::kName, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
