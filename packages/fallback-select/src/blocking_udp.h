// blocking_io's UDP sockets: a reader thread blocked in recvmmsg(MSG_WAITFORONE) hands whole
// batches of datagrams over, a writer thread sends the outbox (what the kernel had no room for)
// with blocking sendmmsg(), and Node's main thread sends with MSG_DONTWAIT and delivers. The
// datagram logic itself is the shared datagram.h; this is only the threading around it.
#ifndef IOMUX_BLOCKING_UDP_H_
#define IOMUX_BLOCKING_UDP_H_

#include <cstdint>
#include <memory>

#include "blocking_sock.h"
#include "datagram.h"
#include "iomux/engine.h"

namespace iomux {
namespace blocking {

// Opens and binds the socket of request as a blocking fd in a new Sock (its two thread slots
// reserved, not started). Returns 0 or -errno (EAGAIN past the thread bound).
int open_datagram_sock(const std::shared_ptr<Hub>& hub, const UdpRequest& request, SockRef* out);

// Starts the writer, then the reader: once the reader runs it may consume datagrams, so nothing
// may fail after it. On failure nothing is left running. Returns 0 or -errno.
int start_datagram_threads(const SockRef& s);

// Engine::udp_send_batch on Node's thread: sends at once what the kernel takes, queues the rest
// for the writer. *direct_written counts the bytes sent here. Returns true when the engine must
// schedule the socket (fault injection holds the writer until the next poll).
bool send_datagrams(Sock& s, const OutgoingDatagram* datagrams, int count, uint64_t* direct_written,
                    DatagramBatchResult* result);

// Delivers the socket's send errors, then its datagrams, in order (poll(), Node's thread).
// Returns true when something did not fit in this batch.
bool serve_datagram(Sock& s, EventSink* sink, Counters* counters);

// Thread bodies (blocking_threads.cc's thread_main runs them).
void run_datagram_reader(const SockRef& s);
void run_datagram_writer(const SockRef& s);

}  // namespace blocking
}  // namespace iomux

#endif  // IOMUX_BLOCKING_UDP_H_
