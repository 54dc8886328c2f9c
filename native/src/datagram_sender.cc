#include "datagram_sender.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "platform.h"
#include "thread_util.h"

namespace iomux {

namespace {

constexpr size_t kSenderStack = 256 * 1024;  // two batches of message headers and little else
// ENOBUFS (the device queue is full) gives no readiness to wait for: retry after this long.
constexpr int kNoBuffersRetryMs = 1;

bool no_room(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS; }

}  // namespace

std::unique_ptr<DatagramSender> DatagramSender::start(int fd, const Notifier* errors_ready,
                                                      int* rc) {
  std::unique_ptr<DatagramSender> sender(new DatagramSender());
  sender->errors_ready_ = errors_ready;
  sender->queue_.set_queue_only(kMaxSenderQueue);
  *rc = sender->wake_.open();
  if (*rc < 0) return nullptr;
  sender->fd_ = platform::duplicate_socket(fd);
  if (sender->fd_ < 0) {
    *rc = sender->fd_;
    return nullptr;
  }
  *rc = start_thread(&DatagramSender::run, sender.get(), kSenderStack, false, &sender->thread_);
  if (*rc < 0) {
    ::close(sender->fd_);
    return nullptr;
  }
  sender->running_ = true;
  return sender;
}

void* DatagramSender::run(void* self) {
  platform::name_current_thread("iomux-udp-send");
  static_cast<DatagramSender*>(self)->send_loop();
  return nullptr;
}

void DatagramSender::send_batch(const OutgoingDatagram* datagrams, int count,
                                DatagramBatchResult* result) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_ != 0) {
    *result = DatagramBatchResult{};
    result->error = failed_;
    return;
  }
  uint64_t ignored = 0;
  queue_.send_batch(-1, datagrams, count, &ignored, result);  // queue-only: no fd is used
  if (result->taken > 0) work_.notify_one();
  if (!waiting_for_room_) result->queued = 0;
}

void DatagramSender::send_loop() {
  platform::MultiMessage messages[kDatagramBatch];
  iovec iov[kDatagramBatch];
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    // gather() points into the queue's entries, which stay put while send_batch() appends.
    int count = queue_.gather(messages, iov, kDatagramBatch);
    lock.unlock();
    int sent = platform::send_messages(fd_, messages, static_cast<unsigned>(count), false);
    if (sent < 0 && no_room(-sent)) {
      wait_for_room(-sent);
      lock.lock();
      continue;
    }
    int refused = 0;
    uint64_t bytes = 0;
    if (sent < 0) {
      refused = -sent;
      sent = 1;  // a batch send fails only on its first datagram: drop that one
    } else {
      for (int i = 0; i < sent; ++i) bytes += messages[i].msg_len;
    }
    bytes_sent_.fetch_add(bytes, std::memory_order_relaxed);
    lock.lock();
    queue_.consume(sent);
    if (refused != 0) {
      if (errors_.size() < kMaxSenderErrors) {
        errors_.push_back(refused);
      } else {
        dropped_errors_.fetch_add(1, std::memory_order_relaxed);
      }
      // Non-blocking and thread-safe; a failure means the glue is closing it (it stops this
      // thread first), so there is no one left to tell.
      if (errors_ready_ != nullptr) errors_ready_->signal();
    }
  }
}

void DatagramSender::wait_for_room(int error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_for_room_ = true;
  }
  pollfd fds[2] = {{wake_.fd(), POLLIN, 0}, {fd_, POLLOUT, 0}};
  // ENOBUFS: writability is already reported, so wait on the stop signal for a short while.
  bool timed = error == ENOBUFS;
  int rc = ::poll(fds, timed ? 1 : 2, timed ? kNoBuffersRetryMs : -1);
  int poll_error = rc < 0 && errno != EINTR ? errno : 0;
  std::lock_guard<std::mutex> lock(mutex_);
  waiting_for_room_ = false;
  if (poll_error != 0) {
    // Only a kernel out of memory fails a poll of two valid fds: stop sending, keep the queue
    // (a fallback's detach saves it), and refuse further sends with the errno.
    failed_ = poll_error;
    stopping_ = true;
  }
}

void DatagramSender::stop() {
  if (!running_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_one();
  wake_.signal();
  pthread_join(thread_, nullptr);
  running_ = false;
  ::close(fd_);
  fd_ = -1;
  wake_.close();
}

void DatagramSender::save(std::vector<uint8_t>* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.save(out);
}

int DatagramSender::restore(const std::vector<uint8_t>& in) {
  std::lock_guard<std::mutex> lock(mutex_);
  int rc = queue_.restore(in);
  if (rc == 0) work_.notify_one();
  return rc;
}

bool DatagramSender::take_error(int* error) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (errors_.empty()) return false;
  *error = errors_.front();
  errors_.pop_front();
  return true;
}

}  // namespace iomux
