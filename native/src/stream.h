// The stream core: the per-socket state of a TCP connection and its transitions, shared by every
// engine (readiness: epoll/select/kqueue, io_uring, blocking_io). A backend keeps only its kernel
// calls (wait for readiness, submit a SENDMSG, run a reader thread); every decision about what a
// stream does next (queue or send, when DRAIN, END and CLOSE go out and in which order, when the
// FIN is sent, when the socket is finished) is made here, once.
//
// Division of work between the core and a backend:
// - The core may call non-blocking socket calls on the fd it is given: send or sendmsg with
//   MSG_DONTWAIT (try-write and synchronous flushes; safe on blocking fds too) and
//   shutdown(SHUT_WR) (the FIN). It never closes an fd, never releases an id and never waits.
// - A function that returns StreamFate::kClose has finished the stream (its CLOSE, when one is
//   due, is already in the sink): the backend must close the fd and release the id now, and must
//   not call the core for this state again.
// - Completion engines (io_uring) send the queue through their own operations: gather() the
//   iovecs, submit, then report the result with sent() and, once empty, queue_flushed().
//
// Threading: a StreamState is not thread-safe. Every call for one socket must come from one thread
// at a time (the engine's, i.e. Node's main thread; blocking_io holds the socket's mutex around
// each call). No call blocks.
#ifndef IOMUX_STREAM_H_
#define IOMUX_STREAM_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "iomux/engine.h"
#include "write_queue.h"

namespace iomux {

// Whether the stream lives on after a transition.
enum class StreamFate : uint8_t {
  kOpen,   // keep the socket
  kClose,  // finished: close the fd and release the id now (any CLOSE event was pushed)
};

// The most iovecs one sendmsg gets from the core (try-write windows and queue flushes).
constexpr int kStreamMaxIov = 64;

// Bytes taken from the kernel that the batch had no room for (slab full) or that arrived while the
// stream was paused, in order. Empty inboxes own little memory.
class Inbox {
 public:
  bool empty() const { return head_ == bytes_.size(); }
  size_t size() const { return bytes_.size() - head_; }
  // Copies len bytes in after the ones already held. Returns false when memory ran out.
  bool append(const uint8_t* data, size_t len);
  // Moves as many held bytes as the slab has room for into the sink as DATA events for id.
  // Returns true when everything was delivered; false sets sink->slab_exhausted (the batch ends).
  bool deliver(int id, EventSink* sink);
  // Appends the held bytes to out (DetachedSocket::undelivered) and forgets them.
  void take_all(std::vector<uint8_t>* out);

 private:
  void compact();
  std::vector<uint8_t> bytes_;
  size_t head_ = 0;  // first undelivered byte
};

// Pushes a DATA event for [offset, offset + len) of the slab, merged into the previous event when
// that one is the same socket's and ends where this one starts (one event per contiguous run).
void push_data(EventSink* sink, int id, size_t offset, size_t len);

// Sends bufs[0, count) at once without blocking (MSG_DONTWAIT, so on blocking fds too) and without
// SIGPIPE: send(2) for one buffer, sendmsg for more. Bytes sent, or -errno (EINTR is retried).
ssize_t send_now(int fd, const iovec* bufs, int count);

// Sends a FIN (shutdown(SHUT_WR)). ENOTCONN means the peer already reset; the read side reports it.
void send_fin(int fd);

class StreamState : public SocketFlags {
 public:
  StreamState() = default;
  StreamState(StreamState&&) noexcept = default;
  StreamState& operator=(StreamState&&) noexcept = default;

  WriteQueue queue;          // bytes the kernel did not take yet
  Inbox inbox;               // bytes read but not delivered yet
  bool eof_pending = false;  // EOF read; END goes out after the inbox
  int err_pending = 0;       // read error (positive errno); CLOSE goes out after the inbox

  // ---- Output ----

  // Engine::write. When nothing is queued and the stream is connected, sends at once what the
  // kernel takes (windows of kStreamMaxIov buffers, like uv_try_write); copies the rest into the
  // queue and asks for DRAIN. Returns the bytes queued afterwards, or -errno (EPIPE after end(),
  // ENOMEM). *started_queue is set when the queue went from empty to non-empty: the backend must
  // then start sending it (write interest, a SENDMSG, the writer thread). `shared` (a broadcast)
  // holds the same bytes as bufs: what the kernel does not take is queued by reference to its
  // shared copy.
  int64_t write(int fd, const iovec* bufs, int count, Counters* counters, bool* started_queue,
                SharedPayload* shared);

  // Fills up to max iovecs with the queued bytes (for a backend's own send operation).
  int gather(iovec* out, int max) const { return queue.gather(out, max); }
  // The backend's send of n queued bytes completed.
  void sent(size_t n, Counters* counters);
  // Sends queued bytes now with non-blocking sendmsg until the queue is empty or the kernel stops
  // taking them. Returns 0 (queue empty), 1 (bytes remain), or -errno (the stream failed: call
  // fail()).
  int flush(int fd, Counters* counters);
  // The queue is empty (after flush() or sent()): pushes DRAIN if a write had queued, then applies
  // a requested shutdown (FIN), and finishes the stream when the peer had ended too (CLOSE 0).
  StreamFate queue_flushed(int fd, int id, EventSink* sink);

  // Engine::shutdown (end()). Sends the FIN now when nothing is queued and the stream is
  // connected, else when the queue empties. kClose (with *result = kClosed and no CLOSE event, as
  // the Engine contract says) when the peer had already ended.
  StreamFate request_shutdown(int fd, ShutdownResult* result);

  // The connect completed successfully: the stream is open. Sends the FIN when end() came while
  // connecting with nothing queued. Returns whether the backend must start sending the queue.
  bool connected(int fd);

  // ---- Input ----

  // Whether data should be read from the kernel now (not paused, no END yet, nothing held).
  bool wants_input() const {
    return !connecting && !paused && !read_eof && !eof_pending && err_pending == 0;
  }
  // Whether held input (bytes, END or an error) waits for delivery.
  bool input_held() const { return !inbox.empty() || eof_pending || err_pending != 0; }
  // For destroy(), before the fd is closed: bytes taken from the kernel but never delivered are
  // unread input, as node:net's destroy() sees it, so the close sends RST, as the kernel does for
  // bytes still in its own queue.
  void reset_if_input_unread(int fd) const;
  // Bytes read from the kernel into the backend's own buffer: delivered into the slab when not
  // paused and nothing is held, else (or what does not fit) kept in the inbox; afterwards
  // input_held() tells whether the backend must call deliver() later (once not paused). kClose
  // (CLOSE ENOMEM pushed) when the inbox could not grow. Counters::bytes_read is the backend's to
  // count (at its kernel call), not take()'s.
  StreamFate take(int id, const uint8_t* data, size_t len, EventSink* sink);
  // The backend read len bytes straight into the slab at sink->slab_used (only while
  // wants_input() and nothing is held): pushes the DATA event and accounts the bytes.
  static void took_into_slab(int id, size_t len, EventSink* sink, Counters* counters);
  // The kernel reported EOF. Delivers END now (and CLOSE 0 when our FIN was sent: kClose), or
  // holds it until the inbox is delivered and the stream resumed.
  StreamFate on_eof(int id, EventSink* sink);
  // A read failed with err (positive). Delivers CLOSE err now (kClose), or after the inbox.
  StreamFate on_read_error(int id, int err, EventSink* sink);
  // Delivers held input in order: bytes, then END (and CLOSE when our FIN was out), or the held
  // error's CLOSE. How the stream ended goes out in a later call than its last bytes, as a
  // readiness engine learns it only from the read after a short one, so JS can still pause in
  // between. Does nothing while paused. Sets *more when the backend must call again (bytes remain
  // because the slab filled, or the END / CLOSE waits for the next batch).
  StreamFate deliver(int id, EventSink* sink, bool* more);

  // Pushes CLOSE err; the backend then closes the fd and releases the id.
  static StreamFate fail(int id, int err, EventSink* sink);

  // ---- Runtime fallback ----

  // Copies flags, the unsent queue (in order) and the undelivered inbox into out; the queue is
  // left as it was (a completion engine may still have a send in flight reading it).
  void save(DetachedSocket* out);
  // Takes over a detached stream's flags and unsent bytes. Undelivered bytes are not taken: JS
  // delivers DetachedSocket::undelivered itself. Returns 0 or -ENOMEM.
  int restore(const DetachedSocket& socket);
  // After restore(), on a connected stream: sends the FIN when end() had come with nothing left to
  // send but the FIN had not gone out yet.
  void resume_shutdown(int fd);

 private:
  StreamFate end_now(int id, EventSink* sink);
};

// The spare fd used to shed connections when accept() fails with EMFILE/ENFILE: without it the
// pending peer keeps the listener readable forever. Not thread-safe (blocking_io's accept threads
// share one under a mutex).
class ReserveFd {
 public:
  ReserveFd() = default;
  ReserveFd(const ReserveFd&) = delete;
  ReserveFd& operator=(const ReserveFd&) = delete;
  ~ReserveFd() { release(); }

  // Opens /dev/null as the spare. Returns 0 or -errno (the engine then runs without shedding).
  int open();
  void release();
  // Gives the spare up, accepts one pending peer on listen_fd and closes it at once (the peer sees
  // a reset), then takes the spare back, as libuv does. Returns true when a peer was shed or when
  // there is no spare to tell (the caller then treats the error as persistent), false when no peer
  // was pending.
  bool shed(int listen_fd);

 private:
  int fd_ = -1;
};

}  // namespace iomux

#endif  // IOMUX_STREAM_H_
