// The glue's send threads (datagram_sender.h): one per UDP socket that asked for one, and the
// uv_poll that brings their refused datagrams' errnos to JS as SEND_ERROR events. Owner (the
// NativeBackend) needs void DeliverSenderErrors(), run from the loop when errors wait. Windows
// has none: start() reports EOPNOTSUPP, and every socket sends on the reactor's thread.
#ifndef IOMUX_DATAGRAM_SENDERS_H_
#define IOMUX_DATAGRAM_SENDERS_H_

#include <node_api.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "iomux/engine.h"

#ifndef _WIN32
#include "datagram_sender.h"
#include "notifier.h"
#include "poll_watcher.h"
#endif

namespace iomux {

#ifndef _WIN32

template <typename Owner>
class DatagramSenders {
 public:
  explicit DatagramSenders(Owner* owner) : owner_(owner) {}
  ~DatagramSenders() { close(); }
  DatagramSenders(const DatagramSenders&) = delete;
  DatagramSenders& operator=(const DatagramSenders&) = delete;

  // Starts id's sender on its fd: 0, -EEXIST when it has one, or -errno.
  int start(napi_env env, int id, int fd) {
    if (find(id) != nullptr) return -EEXIST;
    int rc = 0;
    std::unique_ptr<DatagramSender> sender = open(env, fd, &rc);
    if (sender == nullptr) return rc;
    add(id, std::move(sender));
    return 0;
  }

  // Hands the datagrams to id's sender (DatagramSender::send_batch); false when id has none. The
  // sockets with one are few (a game server has one): a scan, free when there are none.
  bool send_batch(int id, const OutgoingDatagram* datagrams, int count,
                  DatagramBatchResult* result) {
    DatagramSender* sender = find(id);
    if (sender == nullptr) return false;
    sender->send_batch(datagrams, count, result);
    return true;
  }

  // The socket is being closed: its sender stops and its queue is dropped.
  void stop(int id) { remove(id); }

  // After the engine's detach of id (a runtime fallback): stops id's sender and appends its queue
  // to the socket's unsent datagrams. True when id had one (the successor then starts one).
  bool detach_into(int id, DetachedSocket* socket) {
    std::unique_ptr<DatagramSender> sender = remove(id);
    if (sender == nullptr) return false;
    sender->save(&socket->unsent);
    return true;
  }

  // Adopts a detached datagram socket that had a sender: its unsent datagrams go to a new sender
  // on its fd, which then serves the id the engine gives it. When no sender can start, the engine
  // takes them into its own queue and the socket sends on the reactor's thread. Returns the id or
  // -errno, as Engine::adopt.
  int adopt(napi_env env, Engine* engine, DetachedSocket&& socket) {
    int rc = 0;
    std::unique_ptr<DatagramSender> sender = open(env, socket.fd, &rc);
    if (sender != nullptr && sender->restore(socket.unsent) == 0) {
      socket.unsent.clear();
    } else if (sender != nullptr) {
      return -EINVAL;  // bytes save() did not write: as the engine's restore reports them
    }
    int id = engine->adopt(std::move(socket));
    if (id >= 0 && sender != nullptr) add(id, std::move(sender));
    return id;
  }

  // Moves waiting errnos into the sink as SEND_ERROR events while it has room; what does not fit
  // is signalled again, for the next turn of the loop. A null sink only clears the signal.
  void drain_errors(EventSink* sink) {
    errors_ready_.drain();
    if (sink == nullptr) return;
    for (const auto& entry : senders_) {
      int error = 0;
      while (!sink->full() && entry.second->take_error(&error))
        sink->push(kEventSendError, entry.first, error);
    }
    if (sink->full()) errors_ready_.signal();
  }

  uint64_t bytes_sent() const {
    uint64_t total = stopped_bytes_;
    for (const auto& entry : senders_) total += entry.second->bytes_sent();
    return total;
  }

  // Stops every sender (their queues are dropped, as a close drops them) and the watcher.
  void close() {
    while (!senders_.empty()) remove(senders_.back().first);
    if (watcher_ != nullptr) PollWatcher<DatagramSenders>::Close(watcher_);
    watcher_ = nullptr;
    errors_ready_.close();
  }

  // PollWatcher's calls.
  void OnReady(int status) {
    if (status < 0) {
      // libuv cannot watch the notifier any more: errors stay queued, nothing else changes.
      PollWatcher<DatagramSenders>::Close(watcher_);
      watcher_ = nullptr;
      return;
    }
    owner_->DeliverSenderErrors();
  }
  void ReleaseAtExit() {
    watcher_ = nullptr;
    close();
  }

 private:
  DatagramSender* find(int id) const {
    for (const auto& entry : senders_)
      if (entry.first == id) return entry.second.get();
    return nullptr;
  }

  // A sender on fd, not yet any id's: null with *rc = -errno when it cannot start.
  std::unique_ptr<DatagramSender> open(napi_env env, int fd, int* rc) {
    *rc = watch(env);
    if (*rc < 0) return nullptr;
    return DatagramSender::start(fd, &errors_ready_, rc);
  }

  void add(int id, std::unique_ptr<DatagramSender> sender) {
    senders_.emplace_back(id, std::move(sender));
  }

  // Stops id's sender and forgets it; returns it (its queue kept for save()), or null.
  std::unique_ptr<DatagramSender> remove(int id) {
    for (auto it = senders_.begin(); it != senders_.end(); ++it) {
      if (it->first != id) continue;
      std::unique_ptr<DatagramSender> sender = std::move(it->second);
      senders_.erase(it);
      sender->stop();
      stopped_bytes_ += sender->bytes_sent();
      return sender;
    }
    return nullptr;
  }

  // Opens the notifier and its watcher with the first sender: 0 or -errno.
  int watch(napi_env env) {
    if (watcher_ != nullptr) return 0;
    int rc = errors_ready_.open();
    if (rc < 0) return rc;
    watcher_ = PollWatcher<DatagramSenders>::Open(env, errors_ready_.fd(), this, &rc);
    if (watcher_ == nullptr) {
      errors_ready_.close();
      return -EIO;
    }
    rc = watcher_->Start();
    if (rc == 0) {
      watcher_->Unref();  // errors are reported while the loop runs; they never keep it alive
      return 0;
    }
    PollWatcher<DatagramSenders>::Close(watcher_);
    watcher_ = nullptr;
    errors_ready_.close();
    return -EIO;
  }

  Owner* owner_;
  std::vector<std::pair<int, std::unique_ptr<DatagramSender>>> senders_;
  Notifier errors_ready_;
  PollWatcher<DatagramSenders>* watcher_ = nullptr;
  uint64_t stopped_bytes_ = 0;
};

#else  // Windows: no send threads are built there.

template <typename Owner>
class DatagramSenders {
 public:
  explicit DatagramSenders(Owner* /*owner*/) {}
  int start(napi_env /*env*/, int /*id*/, int /*fd*/) { return -EOPNOTSUPP; }
  bool send_batch(int /*id*/, const OutgoingDatagram* /*datagrams*/, int /*count*/,
                  DatagramBatchResult* /*result*/) {
    return false;
  }
  void stop(int /*id*/) {}
  bool detach_into(int /*id*/, DetachedSocket* /*socket*/) { return false; }
  int adopt(napi_env /*env*/, Engine* engine, DetachedSocket&& socket) {
    return engine->adopt(std::move(socket));
  }
  void drain_errors(EventSink* /*sink*/) {}
  uint64_t bytes_sent() const { return 0; }
  void close() {}
};

#endif

}  // namespace iomux

#endif  // IOMUX_DATAGRAM_SENDERS_H_
