// Socket logic shared by the readiness kernels (epoll, kqueue, select). A backend supplies only a
// Poller; ReadinessEngine turns readiness into the socket-level events of iomux/engine.h.
//
// The poller is level-triggered: a socket that still has data (because the batch filled up) is
// reported again on the next poll, so no event can be missed. An fd with no interest left is
// removed from the poller, because kernels report hang-up even for an empty interest set.
#ifndef IOMUX_READINESS_H_
#define IOMUX_READINESS_H_

#include <cerrno>
#include <cstdint>
#include <memory>
#include <vector>

#include "conn_table.h"
#include "datagram.h"
#include "iomux/engine.h"
#include "stream.h"

namespace iomux {

enum Interest : uint8_t { kInterestNone = 0, kInterestRead = 1, kInterestWrite = 2 };

struct Readiness {
  int token;  // the id given to add()
  bool readable;
  bool writable;
  bool failed;  // error or hang-up: the next read or write tells which
};

class Poller {
 public:
  virtual ~Poller() = default;
  // The fd that becomes readable when wait() has something to report.
  virtual int wait_fd() const = 0;
  // Engine::set_waker, for a poller whose own thread learns of readiness (select's watcher): it
  // calls wake(data) when wait() has something, and again from every wait() that reported some.
  virtual void set_waker(Engine::Waker /*wake*/, void* /*data*/) {}
  virtual int add(int fd, int token, uint8_t interest) = 0;
  virtual int modify(int fd, int token, uint8_t interest) = 0;
  virtual int remove(int fd) = 0;
  // Reports up to max ready fds without blocking. Returns the count or -errno.
  virtual int wait(Readiness* out, int max) = 0;
  // A poller that queues add() / modify() for its next wait (kqueue's changelist) hands them to
  // the kernel here. The engine calls it at the end of every poll(), so the changes made while
  // serving a batch go out together, and right after a change made outside a poll (the wait fd
  // is only polled once readable, so a queued change could otherwise wait forever). Returns 0 or
  // -errno of a refused change; wait() then reports the sockets of refused changes as failed.
  virtual int commit() { return 0; }
};

class ReadinessEngine final : public Engine {
 public:
  ReadinessEngine(std::unique_ptr<Poller> poller, const EngineConfig& config);
  ~ReadinessEngine() override;

  int wait_fd() const override { return poller_->wait_fd(); }
  void set_waker(Waker wake, void* data) override { poller_->set_waker(wake, data); }
  int poll(EventSink* sink) override;
  int broken() const override { return broken_; }
  int listen(const ListenRequest& request) override;
  int connect(const ConnectRequest& request) override;
  int64_t write(int id, const iovec* bufs, int count, SharedPayload* shared) override;
  int set_reading(int id, bool reading) override;
  int shutdown(int id, ShutdownResult* result) override;
  int destroy(int id) override;
  int address(int id, bool peer, sockaddr_storage* out, socklen_t* len) override;
  const Counters& counters() const override { return counters_; }
  int detach(int id, DetachedSocket* out) override;
  int adopt(DetachedSocket&& socket) override;
  int udp_open(const UdpRequest& request) override;
  int udp_send_batch(int id, const OutgoingDatagram* datagrams, int count,
                     DatagramBatchResult* result) override;
  int socket_fd(int id) override;

 private:
  // A stream socket's state is the shared StreamState; a listener uses only its flags.
  struct Socket : StreamState {
    bool in_use = false;
    bool datagram = false;
    uint8_t interest = kInterestNone;
    int fd = -1;
    // UDP only: datagrams waiting for the socket to become writable.
    DatagramOutbox outbox;
    size_t max_datagram = 0;
  };

  int add_socket(int fd, bool listener, bool connecting, uint8_t interest);
  void serve(const Readiness& r, bool carried, EventSink* sink);
  void accept_ready(int id, EventSink* sink);
  void connect_ready(int id, EventSink* sink);
  void read_ready(int id, EventSink* sink);
  // Sends queued bytes; returns false when the socket failed and was closed.
  bool flush(int id, EventSink* sink);
  int update_interest(int id);
  void close_socket(int id);
  // Closes the socket when the stream core finished it; true then.
  bool settle(int id, StreamFate fate);
  void fail(int id, int err, EventSink* sink);
  // The poller's wait, failing on purpose once faultKernelAfter successful waits are done.
  int wait_kernel(int max);
  void flush_datagrams(int id, EventSink* sink);

  std::unique_ptr<Poller> poller_;
  EngineConfig config_;
  ConnTable<Socket> sockets_;
  std::vector<Readiness> ready_;
  std::vector<Readiness> backlog_;  // reported ready but not served yet, oldest first
  Counters counters_;
  ReserveFd reserve_;  // given up to accept-and-close a peer when out of fds
  int broken_ = 0;     // -errno once the poller failed; every later poll() reports it
  int64_t fault_after_ = -1;
  int fault_errno_ = EIO;
  int64_t waits_ = 0;     // successful poller waits, for fault injection
  bool polling_ = false;  // inside poll(): interest changes are committed once, at its end
};

}  // namespace iomux

#endif  // IOMUX_READINESS_H_
