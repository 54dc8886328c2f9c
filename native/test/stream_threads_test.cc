// Engine-level TCP echo over the Engine API, for ThreadSanitizer: scripts/ci-native-checks.sh
// links this file with one backend's sources at a time (as udp_batch_test.cc) under
// -fsanitize=thread and runs it. The threads it drives: select's watcher thread, blocking_io's
// accept, reader and writer threads (and their interruption by pause, shutdown and close).
//
// 8 connections each stream 256 KiB in uneven writes to an echo side on the same engine, which
// pauses and resumes reading now and then; every echoed byte is compared, then both sides end.
// About half the client writes go through a SharedPayload (a broadcast's shared queue copy).
// Exit status 0 means every byte came back in order and every socket closed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "iomux/engine.h"
#include "write_queue.h"

namespace {

using iomux::Engine;
using iomux::EventSink;

constexpr int kClients = 8;
constexpr size_t kBytes = 256 * 1024;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED (%s): %s\n", iomux::backend::kName, what.c_str());
    ++failures;
  }
}

uint8_t byte_at(int client, size_t i) { return static_cast<uint8_t>((i * 131 + client * 7) >> 3); }

struct Client {
  int index = 0;
  size_t sent = 0;
  size_t received = 0;
  bool ok = true;
  bool closed = false;
  bool ended = false;
};

struct EchoSide {
  bool paused = false;
  bool closed = false;
};

}  // namespace

int main() {
  iomux::EngineConfig config;
  int error = 0;
  std::unique_ptr<Engine> engine = iomux::backend::create(config, &error);
  if (!engine) {
    std::fprintf(stderr, "%s: create failed (%d)\n", iomux::backend::kName, error);
    return 1;
  }
  iomux::ListenRequest listen;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&listen.addr);
  v4->sin_family = AF_INET;
  v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  listen.addr_len = sizeof(sockaddr_in);
  int listener = engine->listen(listen);
  check(listener >= 0, "listen");
  sockaddr_storage bound{};
  socklen_t bound_len = 0;
  check(engine->address(listener, false, &bound, &bound_len) == 0, "address");

  std::map<int, Client> clients;  // by id
  std::map<int, EchoSide> echoes;
  for (int i = 0; i < kClients; ++i) {
    iomux::ConnectRequest request;
    request.addr = bound;
    request.addr_len = bound_len;
    int id = engine->connect(request);
    check(id >= 0, "connect");
    clients[id].index = i;
  }
  std::vector<uint8_t> chunk(64 * 1024);
  auto pump = [&](int id, Client& c) {
    while (c.sent < kBytes) {
      size_t n = 1 + (c.sent * 2654435761u) % chunk.size();
      if (n > kBytes - c.sent) n = kBytes - c.sent;
      for (size_t k = 0; k < n; ++k) chunk[k] = byte_at(c.index, c.sent + k);
      int64_t queued = 0;
      if ((c.sent / 7) % 2 == 0) {
        iovec iov[2] = {{chunk.data(), n / 2}, {chunk.data() + n / 2, n - n / 2}};
        queued = engine->write(id, iov, 2, nullptr);
      } else {
        // As a broadcast writes: what the kernel does not take is queued by reference to a shared
        // copy, which the writer threads release on their side.
        iomux::SharedPayload payload(chunk.data(), n);
        iovec one{chunk.data(), n};
        queued = engine->write(id, &one, 1, &payload);
      }
      check(queued >= 0, "client write");
      if (queued < 0) return;
      c.sent += n;
      if (queued > 256 * 1024) return;  // wait for DRAIN
    }
    iomux::ShutdownResult result;
    check(engine->shutdown(id, &result) == 0, "client shutdown");
  };

  constexpr int kCapacity = 1024;
  std::vector<int32_t> events(kCapacity * iomux::kEventInts);
  std::vector<uint8_t> slab(1 << 20);
  EventSink sink;
  sink.events = events.data();
  sink.capacity = kCapacity;
  sink.slab = slab.data();
  sink.slab_capacity = slab.size();
  int closed_clients = 0;
  for (int round = 0; round < 20000 && closed_clients < kClients; ++round) {
    pollfd wait{engine->wait_fd(), POLLIN, 0};
    (void)::poll(&wait, 1, 10);
    sink.reset();
    int n = engine->poll(&sink);
    check(n >= 0, "poll");
    if (n < 0) break;
    for (int i = 0; i < n; ++i) {
      const int32_t* e = sink.events + static_cast<ptrdiff_t>(i) * iomux::kEventInts;
      int id = e[1];
      auto client = clients.find(id);
      switch (e[0]) {
        case iomux::kEventAccept:
          echoes[id] = EchoSide{};
          break;
        case iomux::kEventConnect:
          check(e[2] == 0, "connect completion");
          if (client != clients.end()) pump(id, client->second);
          break;
        case iomux::kEventDrain:
          if (client != clients.end()) pump(id, client->second);
          break;
        case iomux::kEventData: {
          const uint8_t* data = sink.slab + e[2];
          size_t len = static_cast<size_t>(e[3]);
          if (client != clients.end()) {
            Client& c = client->second;
            for (size_t k = 0; k < len; ++k) {
              if (data[k] != byte_at(c.index, c.received + k)) c.ok = false;
            }
            c.received += len;
          } else {
            iovec iov{const_cast<uint8_t*>(data), len};
            check(engine->write(id, &iov, 1, nullptr) >= 0, "echo write");
            // Pause now and then (resumed on the next round), so reader threads are stopped
            // and started while bytes flow.
            if ((round + id) % 7 == 0) {
              check(engine->set_reading(id, false) == 0, "pause");
              echoes[id].paused = true;
            }
          }
          break;
        }
        case iomux::kEventEnd:
          if (client != clients.end()) {
            client->second.ended = true;
          } else {
            iomux::ShutdownResult result;
            check(engine->shutdown(id, &result) == 0, "echo shutdown");
            // Closed at once (our queue was empty and the peer had ended): no CLOSE follows.
            if (result == iomux::ShutdownResult::kClosed) echoes[id].closed = true;
          }
          break;
        case iomux::kEventClose:
          check(e[2] == 0, "clean close (errno " + std::to_string(e[2]) + ")");
          if (client != clients.end()) {
            client->second.closed = true;
            ++closed_clients;
          } else {
            echoes[id].closed = true;
          }
          break;
        default:
          break;
      }
    }
    for (auto& [id, side] : echoes) {
      if (side.paused && !side.closed) {
        check(engine->set_reading(id, true) == 0, "resume");
        side.paused = false;
      }
    }
  }
  for (const auto& [id, c] : clients) {
    check(c.closed, "client " + std::to_string(c.index) + " closed");
    check(c.received == kBytes && c.ok, "client " + std::to_string(c.index) +
                                            " got its bytes back (" + std::to_string(c.received) +
                                            ")");
  }
  check(engine->destroy(listener) == 0, "close listener");
  engine.reset();
  if (failures == 0) std::printf("%s: stream threads check passed\n", iomux::backend::kName);
  return failures == 0 ? 0 : 1;
}
