// IOCP engine: starting overlapped operations, and what each completion does to its socket.
#include <algorithm>

#include "iocp_engine.h"

namespace iomux {
namespace iocp {

namespace {

bool would_block(int err) { return err == EWOULDBLOCK || err == EAGAIN; }

}  // namespace

int IocpEngine::add_socket(int fd, bool listener, bool connecting) {
  int id = sockets_.alloc();
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->fd = fd;
  s->listener = listener;
  s->connecting = connecting;
  s->io = new Io;
  s->io->id = id;
  s->io->fd = fd;
  for (Op* op : {&s->io->read, &s->io->send, &s->io->connect}) op->io = s->io;
  s->io->read.kind = OpKind::kRead;
  s->io->send.kind = OpKind::kSend;
  s->io->connect.kind = OpKind::kConnect;
  return id;
}

void IocpEngine::add_ready(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->in_ready) return;
  s->in_ready = true;
  ready_.push_back(id);
}

// ---- Accepts ----

bool IocpEngine::post_accept(int id, Op* op) {
  Socket* s = sockets_.get(id);
  int family = AF_INET;
  sockaddr_storage local;
  socklen_t len = sizeof(local);
  if (getsockname(s->fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) family = local.ss_family;
  int fd = win32::open_stream_socket(family);
  if (fd < 0) return false;
  std::memset(&op->ov, 0, sizeof(op->ov));
  op->accept_fd = fd;
  op->done = false;
  op->pending = true;
  DWORD bytes = 0;
  if (accept_ex_(win32::handle(s->fd), win32::handle(fd), op->addresses, 0, kAddressSlot,
                 kAddressSlot, &bytes, &op->ov)) {
    if (skip_on_success_) queue_inline(op, bytes);
    return true;
  }
  int error = WSAGetLastError();
  if (error == ERROR_IO_PENDING) return true;
  op->pending = false;
  op->accept_fd = -1;
  close_fd(fd);
  return false;
}

// Delivers one completed accept: the new connection (or, for a failed one, nothing: a peer that
// reset before it was accepted is not an error of the listener) and posts the AcceptEx again.
// False when the listener is paused or the batch has no room (the op stays done for later).
bool IocpEngine::finish_accept(int listener_id, Op* op, EventSink* sink) {
  Socket* listener = sockets_.get(listener_id);
  if (listener == nullptr) return true;
  if (listener->paused || sink->full()) return false;
  op->done = false;
  int fd = op->accept_fd;
  op->accept_fd = -1;
  if (op->done_error == 0 && fd >= 0) {
    SOCKET listen_socket = win32::handle(listener->fd);
    int rc =
        setsockopt(fd, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, &listen_socket, sizeof(listen_socket));
    int id = rc == 0 ? associate(fd) : -errno;
    if (id == 0) id = add_socket(fd, false, false);
    if (id >= 0) {
      ++counters_.accepted;
      sink->push(kEventAccept, id, listener_id);
      post_read(id);
    } else {
      close_fd(fd);
      ++counters_.accept_errors;
      sink->push(kEventAcceptError, listener_id, -id);
    }
  } else if (fd >= 0) {
    close_fd(fd);
  }
  if (!post_accept(listener_id, op)) {
    ++counters_.accept_errors;
    sink->push(kEventAcceptError, listener_id, errno != 0 ? errno : EMFILE);
  }
  return true;
}

// ---- Reads ----

void IocpEngine::post_read(int id) {
  Socket* s = sockets_.get(id);
  Op* op = &s->io->read;
  if (op->pending) return;
  std::memset(&op->ov, 0, sizeof(op->ov));
  op->pending = true;
  WSABUF empty{0, nullptr};
  DWORD bytes = 0;
  DWORD flags = s->datagram ? MSG_PEEK : 0;
  int rc = s->datagram ? WSARecvFrom(win32::handle(s->fd), &empty, 1, &bytes, &flags, nullptr,
                                     nullptr, &op->ov, nullptr)
                       : WSARecv(win32::handle(s->fd), &empty, 1, &bytes, &flags, &op->ov, nullptr);
  if (rc == 0) {
    if (skip_on_success_) queue_inline(op, 0);
    return;
  }
  int error = WSAGetLastError();
  if (error == WSA_IO_PENDING) return;
  // Failed at once: the completion port gets nothing. A datagram longer than the zero-byte peek
  // means data is there; any other error is the read's result.
  op->pending = false;
  if (s->datagram && error == WSAEMSGSIZE) {
    s->readable = true;
  } else {
    s->err_pending = win32::errno_from_system(error);
  }
  add_ready(id);
  kick();
}

void IocpEngine::on_read(int id, int error, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return;
  if (error == ECANCELED) return;  // cancelled by detach; nothing was consumed
  if (error == 0 || (s->datagram && (error == EMSGSIZE || error == ECONNRESET))) {
    s->readable = true;
  } else {
    if (s->datagram) {
      sink->push(kEventSendError, id, error);
      post_read(id);
      return;
    }
    settle_fate(id, s->on_read_error(id, error, sink));
    return;
  }
  add_ready(id);
}

// recv() straight into the slab until the kernel has nothing more (then the zero-byte read goes
// out again), the slab is full, or kReadsPerPoll reads were made (the socket stays ready).
void IocpEngine::drain_stream(int id, EventSink* sink) {
  for (int i = 0; i < kReadsPerPoll; ++i) {
    Socket* s = sockets_.get(id);
    if (!s->wants_input() || s->input_held()) return;
    size_t room = sink->slab_capacity - sink->slab_used;
    if (room > config_.read_chunk) room = config_.read_chunk;
    if (room == 0 || sink->full()) {
      sink->slab_exhausted = room == 0 || sink->slab_exhausted;
      return;
    }
    int n = ::recv(win32::handle(s->fd), reinterpret_cast<char*>(sink->slab + sink->slab_used),
                   static_cast<int>(room), 0);
    if (n > 0) {
      counters_.bytes_read += static_cast<uint64_t>(n);
      StreamState::took_into_slab(id, static_cast<size_t>(n), sink, &counters_);
      continue;
    }
    if (n == 0) {
      s->readable = false;
      settle_fate(id, s->on_eof(id, sink));
      return;
    }
    int err = win32::errno_from_system(WSAGetLastError());
    if (would_block(err)) {
      s->readable = false;
      post_read(id);
      return;
    }
    s->readable = false;
    settle_fate(id, s->on_read_error(id, err, sink));
    return;
  }
}

void IocpEngine::drain_datagrams(int id, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (s->paused) return;
  ReceiveOutcome outcome = ReceiveOutcome::kMore;
  for (int i = 0; i < kReadsPerPoll && outcome == ReceiveOutcome::kMore; ++i) {
    outcome = receive_into_sink(s->fd, id, s->max_datagram, sink, &counters_.bytes_read);
  }
  if (outcome == ReceiveOutcome::kDrained) {
    s->readable = false;
    post_read(id);
  }
}

// Everything held for delivery: completed accepts of listeners, held input, readable sockets.
// What the batch has no room for stays listed.
void IocpEngine::deliver_ready(EventSink* sink) {
  std::vector<int> list;
  list.swap(ready_);
  size_t i = 0;
  for (; i < list.size() && !sink->full(); ++i) {
    int id = list[i];
    Socket* s = sockets_.get(id);
    if (s == nullptr) continue;
    s->in_ready = false;
    if (s->listener) {
      bool all = true;
      for (auto& op : s->io->accepts) {
        if (op->done && !finish_accept(id, op.get(), sink)) all = false;
      }
      if (!all && !s->paused) add_ready(id);
      continue;
    }
    if (s->paused) continue;  // resumed later through set_reading, which lists it again
    if (s->datagram) {
      if (s->readable) drain_datagrams(id, sink);
      s = sockets_.get(id);
      if (s != nullptr && s->readable) add_ready(id);
      continue;
    }
    if (s->input_held()) {
      bool more = false;
      StreamFate fate = s->deliver(id, sink, &more);
      if (fate == StreamFate::kClose) {
        close_socket(id);
        continue;
      }
      if (more) {
        add_ready(id);
        continue;
      }
    }
    s = sockets_.get(id);
    if (s->readable) drain_stream(id, sink);
    s = sockets_.get(id);
    if (s != nullptr && ((s->readable && s->wants_input()) || (s->input_held() && !s->paused))) {
      add_ready(id);
    } else if (s != nullptr && !s->readable && s->wants_input() && !s->io->read.pending) {
      post_read(id);
    }
  }
  for (; i < list.size(); ++i) {
    Socket* s = sockets_.get(list[i]);
    if (s != nullptr) {
      s->in_ready = false;
      add_ready(list[i]);
    }
  }
}

// ---- Sends ----

void IocpEngine::post_send(int id) {
  Socket* s = sockets_.get(id);
  Op* op = &s->io->send;
  if (op->pending || s->queue.empty()) return;
  iovec iov[kMaxSendBufs];
  int count = s->gather(iov, kMaxSendBufs);
  for (int i = 0; i < count; ++i) {
    op->bufs[i].buf = static_cast<char*>(iov[i].iov_base);
    op->bufs[i].len = static_cast<ULONG>(iov[i].iov_len);
  }
  std::memset(&op->ov, 0, sizeof(op->ov));
  op->pending = true;
  DWORD bytes = 0;
  if (WSASend(win32::handle(s->fd), op->bufs, static_cast<DWORD>(count), &bytes, 0, &op->ov,
              nullptr) == 0) {
    if (skip_on_success_) queue_inline(op, bytes);
    return;
  }
  int error = WSAGetLastError();
  if (error == WSA_IO_PENDING) return;
  // Failed at once: report it through a completion of our own, so CLOSE comes from poll().
  op->ov.Internal = static_cast<ULONG_PTR>(error);
  queue_inline(op, 0);
}

void IocpEngine::on_send(int id, DWORD bytes, int error, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return;
  if (error != 0) {
    fail(id, error, sink);
    return;
  }
  s->sent(bytes, &counters_);
  if (!s->queue.empty()) {
    post_send(id);
    return;
  }
  settle_fate(id, s->queue_flushed(s->fd, id, sink));
}

// ---- Connects ----

int IocpEngine::post_connect(int id, const sockaddr_storage& addr, socklen_t addr_len) {
  Socket* s = sockets_.get(id);
  Op* op = &s->io->connect;
  std::memset(&op->ov, 0, sizeof(op->ov));
  op->pending = true;
  if (connect_ex_(win32::handle(s->fd), reinterpret_cast<const sockaddr*>(&addr), addr_len, nullptr,
                  0, nullptr, &op->ov)) {
    if (skip_on_success_) queue_inline(op, 0);
    return 0;
  }
  int error = WSAGetLastError();
  if (error == ERROR_IO_PENDING) return 0;
  op->pending = false;
  return -win32::errno_from_system(error);
}

void IocpEngine::on_connect(int id, int error, EventSink* sink) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return;
  if (error == 0 && setsockopt(s->fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, nullptr, 0) != 0) {
    error = errno;
  }
  if (error != 0) {
    sink->push(kEventConnect, id, error);
    close_socket(id);
    return;
  }
  bool send_queue = s->connected(s->fd);
  sink->push(kEventConnect, id, 0);
  if (send_queue) post_send(id);
  s = sockets_.get(id);
  if (s != nullptr && s->wants_input()) post_read(id);
}

// ---- Closing ----

void IocpEngine::close_socket(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return;
  Io* io = s->io;
  // closesocket aborts every pending operation; their completions free the block (orphan).
  close_fd(s->fd);
  for (auto& op : io->accepts) {
    if (op->accept_fd >= 0) {
      close_fd(op->accept_fd);
      op->accept_fd = -1;
    }
  }
  ++counters_.closed;
  release(id);
}

void IocpEngine::release(int id) {
  Io* io = sockets_.get(id)->io;
  io->orphan = true;
  io->id = -1;
  sockets_.release(id);
  if (io->pending() == 0) {
    delete io;
  } else {
    orphans_.push_back(io);
  }
}

void IocpEngine::start_accepting(int id) {
  Io* io = sockets_.get(id)->io;
  for (int i = 0; i < kAcceptsPerListener; ++i) {
    auto op = std::make_unique<Op>();
    op->io = io;
    op->kind = OpKind::kAccept;
    io->accepts.push_back(std::move(op));
  }
  for (auto& op : io->accepts) (void)post_accept(id, op.get());
}

void IocpEngine::forget_io(Io* io) {
  if (!io->orphan || io->pending() != 0) return;
  auto it = std::find(orphans_.begin(), orphans_.end(), io);
  if (it != orphans_.end()) orphans_.erase(it);
  delete io;
}

// Waits (bounded) until a cancelled operation's result is in its OVERLAPPED. Its packet still
// arrives later; the socket's Io is an orphan by then, so the packet only frees it.
bool IocpEngine::wait_for_op(Op* op) {
  DWORD deadline = GetTickCount() + kSettleBudgetMs;
  while (!HasOverlappedIoCompleted(&op->ov)) {
    if (static_cast<LONG>(deadline - GetTickCount()) <= 0) return false;
    Sleep(1);
  }
  return true;
}

}  // namespace iocp
}  // namespace iomux
