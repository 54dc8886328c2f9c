// IOCP engine: the Engine calls from JS (listen, connect, write, ...) and the runtime fallback.
#include "iocp_engine.h"
#include "socket_util.h"

namespace iomux {
namespace iocp {

int IocpEngine::listen(const ListenRequest& request) {
  int fd = open_listener(request);
  if (fd < 0) return fd;
  int rc = associate(fd);
  int id = rc == 0 ? add_socket(fd, true, false) : rc;
  if (id < 0) {
    close_fd(fd);
    return id;
  }
  start_accepting(id);
  bool posted = false;
  for (auto& op : sockets_.get(id)->io->accepts) posted = posted || op->pending;
  if (!posted) {
    int err = errno != 0 ? errno : EMFILE;
    close_socket(id);
    --counters_.closed;
    return -err;
  }
  return id;
}

int IocpEngine::connect(const ConnectRequest& request) {
  // ConnectEx needs a bound socket: without a local address, the wildcard address of the
  // family, any port.
  ConnectRequest bound = request;
  if (bound.local_len == 0) {
    bound.local.ss_family = request.addr.ss_family;
    bound.local_len =
        request.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  }
  int fd = open_connect_socket(bound);
  if (fd < 0) return fd;
  int rc = associate(fd);
  int id = rc == 0 ? add_socket(fd, false, true) : rc;
  if (id < 0) {
    close_fd(fd);
    return id;
  }
  rc = post_connect(id, request.addr, request.addr_len);
  if (rc != 0) {
    close_socket(id);
    --counters_.closed;
    return rc;
  }
  return id;
}

int64_t IocpEngine::write(int id, const iovec* bufs, int count, SharedPayload* shared) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  bool started = false;
  int64_t queued = s->write(s->fd, bufs, count, &counters_, &started, shared);
  if (started) post_send(id);
  return queued;
}

int IocpEngine::set_reading(int id, bool reading) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  if (s->paused == !reading) return 0;
  s->paused = !reading;
  if (!reading) return 0;
  // Whatever waited while paused (held input, completed accepts, a readable socket) goes out in
  // the next poll; an idle one gets its zero-byte read.
  if (s->listener || s->readable || s->input_held()) {
    add_ready(id);
    kick();
  } else if (s->wants_input()) {
    post_read(id);
  }
  return 0;
}

int IocpEngine::shutdown(int id, ShutdownResult* result) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || s->listener || s->datagram) return -EBADF;
  StreamFate fate = s->request_shutdown(s->fd, result);
  if (fate == StreamFate::kClose) {
    close_socket(id);
  }
  return 0;
}

int IocpEngine::destroy(int id) {
  if (sockets_.get(id) == nullptr) return -EBADF;
  close_socket(id);
  return 0;
}

int IocpEngine::address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  return socket_address(s->fd, peer, out, len);
}

int IocpEngine::socket_fd(int id) {
  Socket* s = sockets_.get(id);
  return s == nullptr ? -EBADF : s->fd;
}

int IocpEngine::udp_open(const UdpRequest& request) {
  int fd = open_datagram(request);
  if (fd < 0) return fd;
  int rc = associate(fd);
  int id = rc == 0 ? add_socket(fd, false, false) : rc;
  if (id < 0) {
    close_fd(fd);
    return id;
  }
  Socket* s = sockets_.get(id);
  s->datagram = true;
  s->max_datagram = request.max_datagram;
  s->outbox.read_fault_switch();
  post_read(id);
  return id;
}

int IocpEngine::udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                               DatagramBatchResult* result) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->datagram) return -EBADF;
  bool was_empty = s->outbox.empty();
  s->outbox.send_batch(s->fd, datagrams, count, &counters_.bytes_written, result);
  counters_.writes_queued += static_cast<uint64_t>(result->queued);
  if (was_empty && !s->outbox.empty()) {
    outboxes_.push_back(id);
    kick();
  }
  return 0;
}

// ---- Runtime fallback ----

// Cancels the socket's operations and waits for their results, so its state is exact: a send
// that went out (wholly or in part) is consumed from the queue; a zero-byte read consumed
// nothing. Accepts the listener had completed but not delivered go with it (DetachedSocket::
// accepted), so the successor announces them (closing them reset their peers mid-fallback);
// the cancelled ones are closed, and the successor accepts from the same listening socket.
int IocpEngine::detach(int id, DetachedSocket* out) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  Io* io = s->io;
  CancelIoEx(reinterpret_cast<HANDLE>(win32::handle(s->fd)), nullptr);
  if (io->send.pending) {
    if (!wait_for_op(&io->send)) return -EBUSY;
    if (io->send.ov.Internal == 0)
      s->sent(static_cast<size_t>(io->send.ov.InternalHigh), &counters_);
  }
  if (io->connect.pending && !wait_for_op(&io->connect)) return -EBUSY;
  for (auto& op : io->accepts) {
    // Completed: handled but not delivered (done), or its completion not dequeued yet.
    bool settled = !op->pending || wait_for_op(op.get());
    if (op->accept_fd < 0) continue;
    int error = !settled ? EBUSY : op->pending ? operation_error(op.get()) : op->done_error;
    bool connected = settled && (op->pending || op->done) && error == 0;
    SOCKET listen_socket = win32::handle(s->fd);
    if (connected && setsockopt(op->accept_fd, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, &listen_socket,
                                sizeof(listen_socket)) == 0) {
      out->accepted.push_back(op->accept_fd);
    } else {
      close_fd(op->accept_fd);
    }
    op->accept_fd = -1;
    op->done = false;
  }
  if (s->connecting) {
    // ConnectEx was cancelled: the successor starts from a socket that is no longer connecting.
    return -EOPNOTSUPP;
  }
  static_cast<SocketFlags&>(*out) = static_cast<const SocketFlags&>(*s);
  out->fd = s->fd;
  out->datagram = s->datagram;
  out->max_datagram = s->max_datagram;
  if (s->datagram) {
    s->outbox.save(&out->unsent);
  } else {
    s->save(out);
  }
  out->eof_undelivered = s->eof_pending;
  release(id);
  return 0;
}

int IocpEngine::adopt(DetachedSocket&& socket) {
  // A connect still in progress cannot be handed to ConnectEx: the successor would need
  // writability, which a completion port does not report.
  if (socket.connecting) return -EOPNOTSUPP;
  u_long on = 1;
  if (ioctlsocket(win32::handle(socket.fd), FIONBIO, &on) != 0) {
    return -win32::errno_from_system(WSAGetLastError());
  }
  int rc = associate(socket.fd);
  if (rc != 0) return rc;
  int id = add_socket(socket.fd, socket.listener, false);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->datagram = socket.datagram;
  s->max_datagram = socket.max_datagram;
  if (socket.datagram) {
    s->paused = socket.paused;
    s->outbox.read_fault_switch();
    rc = restore_unsent(socket, &s->queue, &s->outbox);
    if (rc == 0 && !s->outbox.empty()) outboxes_.push_back(id);
  } else if (!socket.listener) {
    rc = s->restore(socket);
  } else {
    s->paused = socket.paused;
  }
  if (rc != 0) {
    s->fd = -1;
    s->io->orphan = true;
    delete s->io;
    sockets_.release(id);
    return rc;
  }
  if (s->listener) {
    start_accepting(id);
    return id;
  }
  if (!s->datagram) {
    s->resume_shutdown(s->fd);
    post_send(id);
  }
  if (!s->paused && (s->datagram || s->wants_input())) post_read(id);
  kick();
  return id;
}

}  // namespace iocp
}  // namespace iomux
