// IOCP engine: setup, the waiter thread, poll and the completion dispatch, availability.
#include <cstring>

#include "iocp_engine.h"

namespace iomux {

namespace backend {
const char* const kName = "iocp";
}

namespace iocp {

namespace {

// The extension functions Winsock hands out per provider (AcceptEx, ConnectEx).
template <typename Fn>
bool extension(int fd, GUID guid, Fn* out) {
  DWORD bytes = 0;
  return WSAIoctl(win32::handle(fd), SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof(guid), out,
                  sizeof(*out), &bytes, nullptr, nullptr) == 0;
}

// libuv's rule for FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: only when every installed TCP and UDP
// provider hands out real IFS handles (a layered non-IFS provider would complete without a
// packet in ways the flag cannot describe).
bool all_providers_ifs() {
  DWORD size = 0;
  if (WSAEnumProtocolsW(nullptr, nullptr, &size) != SOCKET_ERROR ||
      WSAGetLastError() != WSAENOBUFS) {
    return false;
  }
  std::vector<char> buffer(size);
  auto* protocols = reinterpret_cast<WSAPROTOCOL_INFOW*>(buffer.data());
  int count = WSAEnumProtocolsW(nullptr, protocols, &size);
  if (count == SOCKET_ERROR) return false;
  for (int i = 0; i < count; ++i) {
    int proto = protocols[i].iProtocol;
    if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) &&
        (protocols[i].dwServiceFlags1 & XP1_IFS_HANDLES) == 0) {
      return false;
    }
  }
  return true;
}

std::string last_error_text(const char* what, DWORD error) {
  return std::string("iocp setup failed: ") + what + ": " +
         std::strerror(win32::errno_from_system(static_cast<int>(error))) + " (Windows error " +
         std::to_string(error) + ")";
}

}  // namespace

std::string probe_iocp() {
  HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (port == nullptr) return last_error_text("CreateIoCompletionPort", GetLastError());
  CloseHandle(port);
  int fd = win32::open_stream_socket(AF_INET);
  if (fd < 0) return std::string("iocp setup failed: socket: ") + std::strerror(-fd);
  LPFN_ACCEPTEX accept_ex = nullptr;
  LPFN_CONNECTEX connect_ex = nullptr;
  bool found =
      extension(fd, WSAID_ACCEPTEX, &accept_ex) && extension(fd, WSAID_CONNECTEX, &connect_ex);
  DWORD error = WSAGetLastError();
  close_fd(fd);
  if (!found) return last_error_text("AcceptEx/ConnectEx unavailable", error);
  return "";
}

int IocpEngine::init() {
  port_ = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (port_ == nullptr) return -win32::errno_from_system(static_cast<int>(GetLastError()));
  int fd = win32::open_stream_socket(AF_INET);
  if (fd < 0) return fd;
  bool found =
      extension(fd, WSAID_ACCEPTEX, &accept_ex_) && extension(fd, WSAID_CONNECTEX, &connect_ex_);
  int error = found ? 0 : win32::errno_from_system(WSAGetLastError());
  close_fd(fd);
  if (!found) return -error;
  skip_on_success_ = all_providers_ifs();
  try {
    waiter_ = std::thread([this] { waiter_main(); });
  } catch (const std::system_error&) {
    return -EAGAIN;
  }
  return 0;
}

IocpEngine::~IocpEngine() {
  stop_waiter();
  for (int id = 0; id < sockets_.capacity(); ++id) {
    if (sockets_.get(id) != nullptr) close_socket(id);
  }
  settle_orphans();
  if (port_ != nullptr) CloseHandle(port_);
}

void IocpEngine::stop_waiter() {
  if (!waiter_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    waker_ = nullptr;
  }
  taken_.notify_all();
  PostQueuedCompletionStatus(port_, 0, kStopKey, nullptr);
  waiter_.join();
  // What the waiter had dequeued still belongs to operations: settle_orphans() accounts for it.
  backlog_.insert(backlog_.end(), handed_.begin(), handed_.end());
  handed_.clear();
}

// Teardown: every socket is closed, so every pending operation completes (aborted) soon; their
// memory is freed as they do. Operations the kernel never gives back within the budget keep
// their blocks (deliberately leaked: the kernel may still write them).
void IocpEngine::settle_orphans() {
  for (size_t i = backlog_head_; i < backlog_.size(); ++i) {
    Op* op = reinterpret_cast<Op*>(backlog_[i].lpOverlapped);
    if (op != nullptr && backlog_[i].lpCompletionKey == kSocketKey) {
      op->pending = false;
      forget_io(op->io);
    }
  }
  backlog_.clear();
  backlog_head_ = 0;
  DWORD deadline = GetTickCount() + kSettleBudgetMs;
  OVERLAPPED_ENTRY entries[64];
  while (!orphans_.empty() && static_cast<LONG>(deadline - GetTickCount()) > 0) {
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(port_, entries, 64, &n, 10, FALSE)) continue;
    for (ULONG i = 0; i < n; ++i) {
      Op* op = reinterpret_cast<Op*>(entries[i].lpOverlapped);
      if (op == nullptr || entries[i].lpCompletionKey != kSocketKey) continue;
      op->pending = false;
      forget_io(op->io);
    }
  }
  orphans_.clear();
}

void IocpEngine::waiter_main() {
  std::vector<OVERLAPPED_ENTRY> entries(kBatch);
  for (;;) {
    ULONG n = 0;
    BOOL ok = GetQueuedCompletionStatusEx(port_, entries.data(), kBatch, &n, INFINITE, FALSE);
    DWORD error = ok ? 0 : GetLastError();
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      for (ULONG i = 0; i < n; ++i) {
        if (entries[i].lpCompletionKey != kStopKey) handed_.push_back(entries[i]);
      }
      return;
    }
    if (!ok) {
      waiter_error_ = win32::errno_from_system(static_cast<int>(error));
      if (waker_ != nullptr) waker_(waker_data_);
      return;
    }
    for (ULONG i = 0; i < n; ++i) {
      if (entries[i].lpCompletionKey != kStopKey) handed_.push_back(entries[i]);
    }
    if (handed_.empty()) continue;
    if (waker_ != nullptr) waker_(waker_data_);
    // One batch per wake-up: the next dequeue waits until poll() took this one.
    taken_.wait(lock, [this] { return handed_.empty() || stopping_; });
    if (stopping_) return;
  }
}

void IocpEngine::set_waker(Waker wake, void* data) {
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = wake;
  waker_data_ = data;
  if (waker_ != nullptr && (!handed_.empty() || waiter_error_ != 0)) waker_(waker_data_);
}

void IocpEngine::kick() {
  std::lock_guard<std::mutex> lock(mu_);
  if (waker_ != nullptr) waker_(waker_data_);
}

void IocpEngine::take_batch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (waiter_error_ != 0 && broken_ == 0) broken_ = -waiter_error_;
    if (handed_.empty()) return;
    if (backlog_head_ == backlog_.size()) {
      backlog_.clear();
      backlog_head_ = 0;
    }
    backlog_.insert(backlog_.end(), handed_.begin(), handed_.end());
    handed_.clear();
  }
  taken_.notify_one();
}

// An operation that completed at once with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: no packet
// comes, so the engine queues the completion itself and makes sure a poll follows.
void IocpEngine::queue_inline(Op* op, DWORD bytes) {
  OVERLAPPED_ENTRY entry{};
  entry.lpCompletionKey = kSocketKey;
  entry.lpOverlapped = &op->ov;
  entry.dwNumberOfBytesTransferred = bytes;
  backlog_.push_back(entry);
  kick();
}

int IocpEngine::associate(int fd) {
  if (CreateIoCompletionPort(reinterpret_cast<HANDLE>(win32::handle(fd)), port_, kSocketKey, 0) ==
      nullptr) {
    return -win32::errno_from_system(static_cast<int>(GetLastError()));
  }
  if (skip_on_success_ &&
      !SetFileCompletionNotificationModes(reinterpret_cast<HANDLE>(win32::handle(fd)),
                                          FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)) {
    return -win32::errno_from_system(static_cast<int>(GetLastError()));
  }
  return 0;
}

int IocpEngine::poll(EventSink* sink) {
  ++counters_.polls;
  sockets_.recycle();
  take_batch();
  if (broken_ != 0) return broken_;
  // Queued datagrams go out first (IOCP has no writability to wait for: each poll retries).
  std::vector<int> outboxes;
  outboxes.swap(outboxes_);
  for (int id : outboxes) {
    Socket* s = sockets_.get(id);
    if (s == nullptr || !s->datagram) continue;
    s->outbox.flush(s->fd, id, sink, &counters_.bytes_written);
    if (!s->outbox.empty()) outboxes_.push_back(id);
  }
  while (backlog_head_ < backlog_.size() && !sink->full()) {
    OVERLAPPED_ENTRY entry = backlog_[backlog_head_++];
    handle(entry, sink);
  }
  deliver_ready(sink);
  if (backlog_head_ < backlog_.size() || !ready_.empty() || !outboxes_.empty()) kick();
  counters_.events += static_cast<uint64_t>(sink->count);
  return sink->count;
}

void IocpEngine::handle(const OVERLAPPED_ENTRY& entry, EventSink* sink) {
  if (entry.lpCompletionKey != kSocketKey || entry.lpOverlapped == nullptr) return;
  Op* op = reinterpret_cast<Op*>(entry.lpOverlapped);
  Io* io = op->io;
  if (!op->pending) return;  // accounted for already (detach waited for it)
  if (io->orphan) {
    op->pending = false;
    if (op->kind == OpKind::kAccept && op->accept_fd >= 0) {
      close_fd(op->accept_fd);
      op->accept_fd = -1;
    }
    forget_io(io);
    return;
  }
  int error = operation_error(op);
  op->pending = false;
  switch (op->kind) {
    case OpKind::kAccept:
      op->done = true;
      op->done_bytes = entry.dwNumberOfBytesTransferred;
      op->done_error = error;
      if (!finish_accept(io->id, op, sink)) add_ready(io->id);
      break;
    case OpKind::kRead:
      on_read(io->id, error, sink);
      break;
    case OpKind::kSend:
      on_send(io->id, entry.dwNumberOfBytesTransferred, error, sink);
      break;
    case OpKind::kConnect:
      on_connect(io->id, error, sink);
      break;
  }
}

// The result of a completed operation as a positive errno (0: success).
int IocpEngine::operation_error(const Op* op) {
  if (op->ov.Internal == 0) return 0;
  DWORD bytes = 0;
  DWORD flags = 0;
  if (WSAGetOverlappedResult(win32::handle(op->io->fd), const_cast<OVERLAPPED*>(&op->ov), &bytes,
                             FALSE, &flags)) {
    return 0;
  }
  return win32::errno_from_system(WSAGetLastError());
}

}  // namespace iocp

namespace backend {

std::string probe(int simulated_errno) {
  if (simulated_errno != 0) {
    return std::string("iocp setup failed: ") + std::strerror(simulated_errno);
  }
  return iocp::probe_iocp();
}

std::unique_ptr<Engine> create(const EngineConfig& config, int* error) {
  auto engine = std::make_unique<iocp::IocpEngine>(config);
  int rc = engine->init();
  if (rc != 0) {
    *error = rc;
    return nullptr;
  }
  return engine;
}

}  // namespace backend

}  // namespace iomux
