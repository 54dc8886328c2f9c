// io_uring engine: the Engine calls from JS (see iouring_engine.h).
#ifdef __linux__

#include "iouring_engine.h"

namespace iomux {
namespace iouring {

// ---------------------------------------------------------------------------------------------
// Socket calls from JS

int IouringEngine::listen(const ListenRequest& request) {
  int fd = open_listener(request);
  if (fd < 0) return fd;
  // Accepted sockets inherit TCP_NODELAY from the listener; this saves a syscall per accept.
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int id = add_socket(fd, true, false);
  if (id < 0) return id;
  arm_accept(id);
  return id;
}

int IouringEngine::connect(const ConnectRequest& request) {
  int fd = open_connect_socket(request);
  if (fd < 0) return fd;
  int id = add_socket(fd, false, true);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->memory = std::make_unique<OpMemory>();
  std::memcpy(&s->memory->addr, &request.addr, sizeof(request.addr));
  s->memory->addr_len = request.addr_len;
  arm_connect(id);
  return id;
}

int64_t IouringEngine::write(int id, const iovec* bufs, int count, SharedPayload* shared) {
  Socket* s = sockets_.stream(id);
  if (s == nullptr) return -EBADF;
  bool started = false;
  int64_t queued = s->write(s->fd, bufs, count, &counters_, &started, shared);
  if (queued <= 0) return queued;
  // The try-write just filled the socket buffer: the SENDMSG waits for room first.
  if (!s->connecting && !s->send_inflight) arm_send(id, started);
  return queued;
}

int IouringEngine::set_reading(int id, bool reading) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  if (s->paused == !reading) return 0;
  s->paused = !reading;
  if (!reading) {
    // Data the receive already took before the cancel lands is held in the inbox.
    cancel_arm(id);
    return 0;
  }
  if (s->listener) {
    maybe_arm_accept(id);
    return 0;
  }
  if (s->datagram) {
    if (s->readable) add_ready(id);
    maybe_arm_datagram(id);
    return 0;
  }
  if (s->input_held() || (s->direct && s->readable)) add_ready(id);
  maybe_arm_recv(id);
  return 0;
}

int IouringEngine::shutdown(int id, ShutdownResult* result) {
  Socket* s = sockets_.stream(id);
  *result = ShutdownResult::kPending;
  if (s == nullptr) return -EBADF;
  settle_fate(id, s->request_shutdown(s->fd, result));
  return 0;
}

int IouringEngine::destroy(int id) {
  Socket* s = sockets_.get(id);
  if (s == nullptr) return -EBADF;
  s->reset_if_input_unread(s->fd);
  close_socket(id);
  return 0;
}

int IouringEngine::address(int id, bool peer, sockaddr_storage* out, socklen_t* len) {
  return sockets_.address(id, peer, out, len);
}

int IouringEngine::socket_fd(int id) { return sockets_.fd_of(id); }

int IouringEngine::udp_open(const UdpRequest& request) {
  int fd = open_datagram(request);
  if (fd < 0) return fd;
  int id = add_socket(fd, false, false);
  if (id < 0) return id;
  Socket* s = sockets_.get(id);
  s->datagram = true;
  s->max_datagram = request.max_datagram;
  s->outbox.read_fault_switch();
  arm_datagram_in(id);
  return id;
}

int IouringEngine::udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                                  DatagramBatchResult* result) {
  Socket* s = sockets_.get(id);
  if (s == nullptr || !s->datagram) return -EBADF;
  s->outbox.send_batch(s->fd, datagrams, count, &counters_.bytes_written, result);
  if (result->queued == 0) return 0;
  counters_.writes_queued += static_cast<uint64_t>(result->queued);
  if (!s->out_poll) arm_datagram_out(id);
  return 0;
}

}  // namespace iouring
}  // namespace iomux

#endif  // __linux__
