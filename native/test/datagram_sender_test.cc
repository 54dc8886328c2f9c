// DatagramSender (datagram_sender.h) on its own, for AddressSanitizer/UBSan and ThreadSanitizer:
// scripts/ci-native-checks.sh builds this file with the shared core under both and runs it. A Unix
// datagram socketpair stands in for the UDP socket because its sends refuse with EAGAIN once the
// peer's queue is full (loopback UDP never does), so the thread's wait for room, the queue's
// bound, a stop during the wait and the save/restore of what was left are all reached.
//
// Checks: 600 datagrams from batches arrive complete and in order while the reader is slower than
// the sender; with no reader, send_batch reports queued (backpressure) and then ENOBUFS at the
// 8 MiB bound; stop() during the wait for room returns at once; save() holds exactly the datagrams
// not yet sent, and a second sender restore()s and sends them, so none is lost or sent twice; a
// refusal (EDESTADDRREQ) is reported once, through the notifier, and the next datagram goes out.
// Exit status 0 means every check held.
#include "datagram_sender.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "notifier.h"

namespace {

using iomux::DatagramBatchResult;
using iomux::DatagramSender;
using iomux::OutgoingDatagram;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED (datagram sender): %s\n", what.c_str());
    ++failures;
  }
}

// Datagram `index`: its number in the first 4 bytes, then a pattern of it.
std::vector<uint8_t> numbered(uint32_t index, size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(index * 31 + i);
  std::memcpy(bytes.data(), &index, sizeof(index));
  return bytes;
}

// Hands datagrams [first, first + count) of `size` bytes to the sender in one call.
DatagramBatchResult send_range(DatagramSender* sender, uint32_t first, int count, size_t size) {
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<iovec> iov(static_cast<size_t>(count));
  std::vector<OutgoingDatagram> datagrams(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i)
    payloads.push_back(numbered(first + static_cast<uint32_t>(i), size));
  for (int i = 0; i < count; ++i) {
    auto at = static_cast<size_t>(i);
    iov[at] = iovec{payloads[at].data(), payloads[at].size()};
    datagrams[at] = OutgoingDatagram{nullptr, 0, &iov[at], 1};
  }
  DatagramBatchResult result;
  sender->send_batch(datagrams.data(), count, &result);
  return result;  // the payloads die here: the sender must have copied them
}

// Reads one datagram within timeout_ms: its number, or -1 when none came. Checks its bytes.
int64_t read_numbered(int fd, size_t size, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return -1;
  std::vector<uint8_t> buf(size + 1);
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n != static_cast<ssize_t>(size)) return -2;
  uint32_t index = 0;
  std::memcpy(&index, buf.data(), sizeof(index));
  buf.resize(size);
  return buf == numbered(index, size) ? index : -3;
}

bool make_pair(int fds[2]) {
  if (::socketpair(AF_UNIX, SOCK_DGRAM, 0, fds) != 0) return false;
  int sndbuf = 64 * 1024;  // a small send buffer: the sender meets EAGAIN early
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  return true;
}

void in_order_with_slow_reader() {
  int fds[2];
  check(make_pair(fds), "socketpair");
  int rc = 0;
  std::unique_ptr<DatagramSender> sender = DatagramSender::start(fds[0], nullptr, &rc);
  check(sender != nullptr, "start: " + std::to_string(rc));
  if (sender == nullptr) return;
  ::close(fds[0]);  // the sender sends on its own duplicate
  constexpr int kTotal = 600;
  for (uint32_t first = 0; first < kTotal; first += 50) {
    DatagramBatchResult result = send_range(sender.get(), first, 50, 1000);
    check(result.taken == 50 && result.error == 0, "batch taken whole");
  }
  for (int64_t expected = 0; expected < kTotal; ++expected) {
    int64_t got = read_numbered(fds[1], 1000, 5000);
    if (got != expected) {
      check(false, "datagram " + std::to_string(expected) + " read as " + std::to_string(got));
      break;
    }
    if (expected % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  check(read_numbered(fds[1], 1000, 50) == -1, "nothing after the last");
  check(sender->bytes_sent() == kTotal * 1000u, "bytes_sent counts every byte");
  sender->stop();
  ::close(fds[1]);
}

void bound_stop_save_restore() {
  int fds[2];
  check(make_pair(fds), "socketpair");
  int rc = 0;
  std::unique_ptr<DatagramSender> sender = DatagramSender::start(fds[0], nullptr, &rc);
  check(sender != nullptr, "start");
  if (sender == nullptr) return;
  constexpr size_t kSize = 4096;
  uint32_t taken = 0;
  bool saw_queued = false;
  bool saw_bound = false;
  for (int round = 0; round < 4000 && !saw_bound; ++round) {
    DatagramBatchResult result = send_range(sender.get(), taken, 16, kSize);
    taken += static_cast<uint32_t>(result.taken);
    if (result.queued > 0) saw_queued = true;
    if (result.error == ENOBUFS) saw_bound = true;
    if (!saw_queued) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  check(saw_queued, "backpressure reported while the thread waits for room");
  check(saw_bound, "ENOBUFS at the bound");
  check(static_cast<size_t>(taken) * kSize > iomux::kMaxSenderQueue - 16 * kSize,
        "the bound is near kMaxSenderQueue");
  auto before = std::chrono::steady_clock::now();
  sender->stop();
  auto waited = std::chrono::steady_clock::now() - before;
  check(waited < std::chrono::milliseconds(500), "stop() during the wait for room is prompt");
  std::vector<uint8_t> saved;
  sender->save(&saved);
  // What went out before the stop, then what was saved, sent by a successor: every datagram once.
  std::unique_ptr<DatagramSender> successor = DatagramSender::start(fds[0], nullptr, &rc);
  check(successor != nullptr, "successor start");
  if (successor == nullptr) return;
  std::thread reader([&] {
    for (int64_t expected = 0; expected < taken; ++expected) {
      int64_t got = read_numbered(fds[1], kSize, 5000);
      if (got != expected) {
        check(false,
              "after restore: " + std::to_string(expected) + " read as " + std::to_string(got));
        return;
      }
    }
    check(read_numbered(fds[1], kSize, 50) == -1, "nothing twice after restore");
  });
  check(successor->restore(saved) == 0, "restore of save()'s bytes");
  reader.join();
  std::vector<uint8_t> garbage{1, 2, 3};
  check(successor->restore(garbage) == -EINVAL, "restore refuses bytes save() did not write");
  successor->stop();
  ::close(fds[0]);
  ::close(fds[1]);
}

void refusal_reported_once() {
  int udp = ::socket(AF_INET, SOCK_DGRAM, 0);  // not connected: a datagram without an address
  int peer = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  check(::bind(peer, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind peer");
  ::getsockname(peer, reinterpret_cast<sockaddr*>(&addr), &len);
  iomux::Notifier errors_ready;
  check(errors_ready.open() == 0, "notifier");
  int rc = 0;
  std::unique_ptr<DatagramSender> sender = DatagramSender::start(udp, &errors_ready, &rc);
  check(sender != nullptr, "start");
  if (sender == nullptr) return;
  uint8_t byte = 7;
  iovec iov{&byte, 1};
  sockaddr_storage to{};
  std::memcpy(&to, &addr, sizeof(addr));
  OutgoingDatagram datagrams[2] = {{nullptr, 0, &iov, 1}, {&to, sizeof(addr), &iov, 1}};
  DatagramBatchResult result;
  sender->send_batch(datagrams, 2, &result);
  check(result.taken == 2 && result.error == 0, "both taken");
  pollfd p{errors_ready.fd(), POLLIN, 0};
  check(::poll(&p, 1, 5000) == 1, "the notifier is signalled");
  int error = 0;
  check(sender->take_error(&error) && error == EDESTADDRREQ, "EDESTADDRREQ reported");
  check(!sender->take_error(&error), "reported once");
  pollfd q{peer, POLLIN, 0};
  check(::poll(&q, 1, 5000) == 1, "the datagram after the refused one arrives");
  sender->stop();
  ::close(udp);
  ::close(peer);
}

}  // namespace

int main() {
  in_order_with_slow_reader();
  bound_stop_save_restore();
  refusal_reported_once();
  if (failures == 0) std::printf("datagram sender: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
