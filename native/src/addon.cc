// N-API glue shared by every backend: one JS class over the backend's Engine, driven by a uv_poll
// on the engine's wait fd inside Node's own loop. One JS call per batch of events.
// A JS call into a method of this addon can still arrive while a worker thread is being
// terminated (its JS runs until V8 next checks for termination, but N-API already refuses to run
// JS). node-addon-api then fails to throw its error, and without this setting that failure is a
// fatal error that aborts the whole process; with it, the throw is dropped (the worker is ending).
// The setting does not cover a failed coercion (ToBoolean, ToNumber, Array::Get), whose empty
// result aborts when it is used: arguments are read through js_args.h instead.
// napi.h is header-only and this is the one translation unit that includes it (precise_timer.h,
// the other user, is part of it), so the setting holds everywhere.
//
// This file is the NativeBackend glue only; PollWatcher (the uv_poll that survives worker teardown)
// is in poll_watcher.h, PreciseTimer in precise_timer.h, address and socket-option parsing in
// socket_options.cc.
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#include <fcntl.h>
#include <napi.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "datagram_senders.h"
#include "iomux/engine.h"
#include "js_args.h"
#include "js_call.h"
#include "platform.h"
#include "platform_glue.h"
#include "read_arena.h"
#include "socket_options.h"
#include "socket_util.h"
#include "write_queue.h"

namespace iomux {

namespace {

class NativeBackend;
// What tells the glue that the engine has work (platform_glue.h): a uv_poll on its wait fd, or
// (Windows, where libuv watches no kernel object but sockets) the engine's own wake-up call.
using Watcher = EngineWatcher<NativeBackend>;

constexpr size_t kMaxWritevBuffers = 1024;
constexpr uint32_t kMaxDatagramBatch = 1024;

// Size limits of a NativeBackend, the same as the TypeScript validation's. Event records carry
// lengths and slab offsets as int32, so nothing may come near 2^31; within these bounds an
// allocation is at most 256 MiB.
constexpr double kMinReadChunk = 1024;
constexpr double kMaxReadChunk = 16.0 * 1024 * 1024;
constexpr double kMaxSlabBytes = 256.0 * 1024 * 1024;
constexpr double kMaxEvents = 1024.0 * 1024;
// Retired read arenas kept for reuse once JS dropped their views (read_arena.h); more are freed.
// V8 does not see the memory of an external Buffer, so the pool's blocks are reported to it
// (napi_adjust_external_memory, ReportArenaMemory): only when blocks are allocated or freed, not
// when the same block is reused, so a steady state paces no garbage collection.
constexpr size_t kFreeArenaBytes = 80u * 1024 * 1024;
constexpr size_t kMinFreeArenas = 4;

// Reads options[name] as an integer in [min, max]; otherwise sets a RangeError naming the option,
// its value and the range, and returns false.
bool SizeOption(const Napi::Object& options, const char* name, double min, double max, double* out,
                std::string* error) {
  Napi::Value raw = options.Get(name);
  double value = raw.IsNumber() ? raw.As<Napi::Number>().DoubleValue() : -1;
  if (raw.IsNumber() && value >= min && value <= max &&
      value == static_cast<double>(static_cast<int64_t>(value))) {
    *out = value;
    return true;
  }
  std::string shown = raw.IsNumber() ? TextOf(raw) : "a non-number";
  *error = std::string("NativeBackend: ") + name + " must be an integer in " +
           std::to_string(static_cast<int64_t>(min)) + ".." +
           std::to_string(static_cast<int64_t>(max)) + ", got " + shown;
  return false;
}

// Flag bits of a detached socket, as exchanged with JS.
constexpr uint32_t kListener = 1;
constexpr uint32_t kConnecting = 2;
constexpr uint32_t kPaused = 4;
constexpr uint32_t kReadEof = 8;
constexpr uint32_t kShutdownRequested = 16;
constexpr uint32_t kWriteShut = 32;
constexpr uint32_t kDrainPending = 64;
constexpr uint32_t kEofUndelivered = 128;
constexpr uint32_t kDatagram = 256;
constexpr uint32_t kSendThread = 512;  // a datagram socket whose sends ran on its own thread

class NativeBackend : public Napi::ObjectWrap<NativeBackend> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeBackend",
                       {
                           InstanceMethod<&NativeBackend::Listen>("listen"),
                           InstanceMethod<&NativeBackend::Connect>("connect"),
                           InstanceMethod<&NativeBackend::Write>("write"),
                           InstanceMethod<&NativeBackend::Writev>("writev"),
                           InstanceMethod<&NativeBackend::Broadcast>("broadcast"),
                           InstanceMethod<&NativeBackend::SetReading>("setReading"),
                           InstanceMethod<&NativeBackend::Shutdown>("shutdown"),
                           InstanceMethod<&NativeBackend::Destroy>("destroy"),
                           InstanceMethod<&NativeBackend::Address>("address"),
                           InstanceMethod<&NativeBackend::Poll>("poll"),
                           InstanceMethod<&NativeBackend::Start>("start"),
                           InstanceMethod<&NativeBackend::Stop>("stop"),
                           InstanceMethod<&NativeBackend::Ref>("ref"),
                           InstanceMethod<&NativeBackend::Unref>("unref"),
                           InstanceMethod<&NativeBackend::Counters>("counters"),
                           InstanceMethod<&NativeBackend::Close>("close"),
                           InstanceMethod<&NativeBackend::Detach>("detach"),
                           InstanceMethod<&NativeBackend::Adopt>("adopt"),
                           InstanceMethod<&NativeBackend::Adoptable>("adoptable"),
                           InstanceMethod<&NativeBackend::UdpOpen>("udpOpen"),
                           InstanceMethod<&NativeBackend::UdpSend>("udpSend"),
                           InstanceMethod<&NativeBackend::UdpSendBatch>("udpSendBatch"),
                           InstanceMethod<&NativeBackend::UdpSendThread>("udpSendThread"),
                           InstanceMethod<&NativeBackend::UdpConnect>("udpConnect"),
                           InstanceMethod<&NativeBackend::SetOption>("setOption"),
                           InstanceMethod<&NativeBackend::GetOption>("getOption"),
                           InstanceAccessor<&NativeBackend::Events>("events"),
                       });
  }

  // new NativeBackend({ maxEvents, slabBytes, readChunk, readBuffers }, onEvents(count, slab))
  // readBuffers 'owned' (default): each batch's bytes stay valid as long as JS keeps a view;
  // 'transient': every batch reuses one buffer from offset 0, so views are valid only until
  // onEvents returns (JS copies what it keeps).
  explicit NativeBackend(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBackend>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "NativeBackend(options, onEvents)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object options = info[0].As<Napi::Object>();
    // Every size is checked before anything is allocated.
    double max_events = 0;
    double read_chunk = 0;
    double slab_bytes = 0;
    std::string range_error;
    if (!SizeOption(options, "maxEvents", 1, kMaxEvents, &max_events, &range_error) ||
        !SizeOption(options, "readChunk", kMinReadChunk, kMaxReadChunk, &read_chunk,
                    &range_error) ||
        !SizeOption(options, "slabBytes", read_chunk, kMaxSlabBytes, &slab_bytes, &range_error)) {
      Napi::RangeError::New(env, range_error).ThrowAsJavaScriptException();
      return;
    }
    EngineConfig config;
    config.max_events = static_cast<int>(max_events);
    config.read_chunk = static_cast<size_t>(read_chunk);
    slab_size_ = static_cast<size_t>(slab_bytes);
    if (options.Has("tuning") && options.Get("tuning").IsObject()) {
      Napi::Object tuning = options.Get("tuning").As<Napi::Object>();
      Napi::Array names = tuning.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); ++i) {
        std::string name = TextOf(names.Get(i));
        config.tuning[name] = Int64Of(tuning.Get(name));
      }
    }
    Napi::Value read_buffers = options.Get("readBuffers");
    if (read_buffers.IsString()) {
      std::string mode = read_buffers.As<Napi::String>().Utf8Value();
      if (mode != "owned" && mode != "transient") {
        Napi::RangeError::New(
            env, "NativeBackend: readBuffers must be 'owned' or 'transient', got " + mode)
            .ThrowAsJavaScriptException();
        return;
      }
      transient_ = mode == "transient";
    } else if (!read_buffers.IsUndefined()) {
      Napi::TypeError::New(env, "NativeBackend: readBuffers must be 'owned' or 'transient'")
          .ThrowAsJavaScriptException();
      return;
    }
    // The read arena is the one large allocation: a failure is an error for JS, not
    // std::bad_alloc. An owned-mode arena holds two batches, so at most one batch's room is left
    // unused when it is retired.
    size_t arena_bytes = transient_ ? slab_size_ : 2 * slab_size_;
    arena_pool_ = std::make_shared<ArenaPool>(
        arena_bytes, std::max(kMinFreeArenas, kFreeArenaBytes / arena_bytes));
    if (!TakeArena(env)) {
      Napi::Error e = Napi::Error::New(
          env, "NativeBackend: cannot allocate slabBytes=" + std::to_string(slab_size_));
      e.Set("errno", Napi::Number::New(env, ENOMEM));
      e.ThrowAsJavaScriptException();
      return;
    }
    // Fault injection (tests, failure rehearsal): fail setup with an errno, or fail the poll that
    // comes after `faultPollAfter` successful ones with `faultPollErrno`.
    int error = options.Has("faultSetupErrno") ? -Int32Of(options.Get("faultSetupErrno")) : 0;
    if (options.Has("faultAfterBytes")) {
      fault_after_bytes_ = Int64Of(options.Get("faultAfterBytes"));
      fault_poll_errno_ = Int32Of(options.Get("faultPollErrno"));
      if (fault_poll_errno_ <= 0) fault_poll_errno_ = EIO;
    }
    if (options.Has("faultPollAfter")) {
      fault_poll_after_ = Int64Of(options.Get("faultPollAfter"));
      fault_poll_errno_ = Int32Of(options.Get("faultPollErrno"));
      if (fault_poll_errno_ <= 0) fault_poll_errno_ = EIO;
    }
    if (error == 0) engine_ = backend::create(config, &error);
    if (!engine_) {
      Napi::Error e = Napi::Error::New(
          env, std::string(backend::kName) + " setup failed: " + std::strerror(-error));
      e.Set("errno", Napi::Number::New(env, -error));
      e.ThrowAsJavaScriptException();
      return;
    }
    events_array_ = Napi::Persistent(
        Napi::Int32Array::New(env, static_cast<size_t>(config.max_events) * kEventInts));
    sink_.events = events_array_.Value().Data();
    sink_.capacity = config.max_events;
    on_events_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "iomux.poll");

    int rc = 0;
    watcher_ = Watcher::Open(env, engine_->wait_fd(), this, &rc);
    if (watcher_ == nullptr) {
      engine_.reset();
      Napi::Error::New(env, Watcher::ErrorText(rc)).ThrowAsJavaScriptException();
      return;
    }
    Watcher::Attach(engine_.get(), watcher_);
  }

  ~NativeBackend() override { Teardown(); }

 private:
  Napi::Value Events(const Napi::CallbackInfo&) { return events_array_.Value(); }

  static int IdArg(const Napi::CallbackInfo& info) {
    return info[0].As<Napi::Number>().Int32Value();
  }

  Napi::Value Result(Napi::Env env, int64_t value) {
    return Napi::Number::New(env, static_cast<double>(value));
  }

  Napi::Value Closed(Napi::Env env) { return Result(env, -EBADF); }

  // A stream address from JS: an IP literal and a port, or (port -1) a Unix socket path.
  static int StreamAddress(const Napi::CallbackInfo& info, sockaddr_storage* addr, socklen_t* len) {
    std::string host = info[0].As<Napi::String>().Utf8Value();
    int port = info[1].As<Napi::Number>().Int32Value();
    if (port < 0) return unix_address(host, addr, len);
    return parse_ip(host, port, addr, len) ? 0 : -EINVAL;
  }

  // listen(host | path, port | -1, backlog, reusePort, ipv6Only) -> id | -errno
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    ListenRequest request;
    int rc = StreamAddress(info, &request.addr, &request.addr_len);
    if (rc < 0) return Result(info.Env(), rc);
    request.backlog = info[2].As<Napi::Number>().Int32Value();
    request.reuse_port = BoolOf(info[3]);
    request.ipv6_only = BoolOf(info[4]);
    return Result(info.Env(), engine_->listen(request));
  }

  // connect(host | path, port | -1[, localAddress | null[, localPort]]) -> id | -errno. The local
  // address is an IP literal (JS picks the wildcard of the host's family for a localPort alone).
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    ConnectRequest request;
    int rc = StreamAddress(info, &request.addr, &request.addr_len);
    if (rc < 0) return Result(info.Env(), rc);
    if (info[2].IsString()) {
      std::string local = info[2].As<Napi::String>().Utf8Value();
      int local_port = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
      if (!parse_ip(local, local_port, &request.local, &request.local_len))
        return Result(info.Env(), -EINVAL);
    }
    return Result(info.Env(), engine_->connect(request));
  }

  // write(id, buffer) -> bytes still queued | -errno
  Napi::Value Write(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
    iovec iov{data.Data(), data.ByteLength()};
    return Result(info.Env(), engine_->write(IdArg(info), &iov, 1, nullptr));
  }

  // broadcast(ids: Int32Array, count, data, results: Float64Array): writes data to the first count
  // ids, in order; results[i] gets ids[i]'s bytes still queued or -errno. The sockets whose kernel
  // does not take it all share one copy of data. Returns how many of them queued part of it, or
  // -EINVAL when count exceeds either array.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    Napi::Int32Array ids = info[0].As<Napi::Int32Array>();
    int64_t count = info[1].As<Napi::Number>().Int64Value();
    Napi::Uint8Array data = info[2].As<Napi::Uint8Array>();
    Napi::Float64Array results = info[3].As<Napi::Float64Array>();
    if (count < 0 || static_cast<uint64_t>(count) > ids.ElementLength() ||
        static_cast<uint64_t>(count) > results.ElementLength())
      return Result(info.Env(), -EINVAL);
    SharedPayload payload(data.Data(), data.ByteLength());
    iovec iov{data.Data(), data.ByteLength()};
    int64_t queued_any = 0;
    for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
      int64_t queued = engine_->write(ids[i], &iov, 1, &payload);
      results[i] = static_cast<double>(queued);
      if (queued > 0) ++queued_any;
    }
    return Result(info.Env(), queued_any);
  }

  // writev(id, buffers[]) -> bytes still queued | -errno
  Napi::Value Writev(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    Napi::Array list = info[1].As<Napi::Array>();
    uint32_t count = list.Length();
    if (count > kMaxWritevBuffers) return Result(info.Env(), -E2BIG);
    iov_scratch_.resize(count);
    for (uint32_t i = 0; i < count; ++i) {
      iovec& iov = iov_scratch_[i];
      if (!BytesOf(ElementOf(list, i), &iov.iov_base, &iov.iov_len))
        return Result(info.Env(), -EINVAL);
    }
    return Result(info.Env(), engine_->write(IdArg(info), iov_scratch_.data(),
                                             static_cast<int>(count), nullptr));
  }

  Napi::Value SetReading(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    return Result(info.Env(), engine_->set_reading(IdArg(info), BoolOf(info[1])));
  }

  // shutdown(id) -> 0 pending | 1 closed now | -errno
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    ShutdownResult result = ShutdownResult::kPending;
    int rc = engine_->shutdown(IdArg(info), &result);
    if (rc < 0) return Result(info.Env(), rc);
    return Result(info.Env(), result == ShutdownResult::kClosed ? 1 : 0);
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    senders_.stop(IdArg(info));  // before the engine closes the fd and its id may be reused
    return Result(info.Env(), engine_->destroy(IdArg(info)));
  }

  // address(id, peer) -> [ip, port, family] | [path, 0, 0] for a Unix socket | -errno
  Napi::Value Address(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    sockaddr_storage addr;
    socklen_t len = 0;
    int rc = engine_->address(IdArg(info), BoolOf(info[1]), &addr, &len);
    if (rc < 0) return Result(env, rc);
    std::string text;
    int port = 0;
    int family = 0;
    if (!unix_path_of(addr, len, &text)) format_ip(addr, &text, &port, &family);
    Napi::Array out = Napi::Array::New(env, 3);
    out.Set(0u, Napi::String::New(env, text));
    out.Set(1u, Napi::Number::New(env, port));
    out.Set(2u, Napi::Number::New(env, family));
    return out;
  }

  // poll() -> events dispatched (synchronously, through onEvents) | -errno when the engine failed
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    if (!engine_) return Closed(info.Env());
    if (dispatching_) return Result(info.Env(), -EBUSY);
    return Result(info.Env(), Drain(false));
  }

  // start/stop/ref/unref after a failed poll released the watcher (or after close) do nothing:
  // the engine is only kept for detach, and its wait fd must not be watched again.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (!engine_ || watcher_ == nullptr) return Closed(info.Env());
    return Result(info.Env(), watcher_->Start());
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (!engine_ || watcher_ == nullptr) return Closed(info.Env());
    return Result(info.Env(), watcher_->Stop());
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (watcher_ != nullptr) watcher_->Ref();
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (watcher_ != nullptr) watcher_->Unref();
    return info.Env().Undefined();
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    if (!engine_) return out;
    const iomux::Counters& c = engine_->counters();
    auto put = [&](const char* name, uint64_t value) {
      out.Set(name, Napi::Number::New(env, static_cast<double>(value)));
    };
    put("polls", c.polls);
    put("events", c.events);
    put("bytesRead", c.bytes_read);
    put("bytesWritten", c.bytes_written + senders_.bytes_sent());
    put("accepted", c.accepted);
    put("closed", c.closed);
    put("writesQueued", c.writes_queued);
    put("acceptErrors", c.accept_errors);
    put("readArenas", arena_pool_->allocated());
    put("readArenasReused", arena_pool_->reused());
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Teardown();
    return info.Env().Undefined();
  }

  // detach(id, handOff) -> [fd, flags, unsent: Buffer, undelivered: Buffer, maxDatagram,
  // accepted: number[]] | -errno. handOff:
  // this socket alone leaves a live engine (Engine::hand_off), else a runtime fallback's detach.
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    DetachedSocket socket;
    bool hand_off = info.Length() > 1 && BoolOf(info[1]);
    int rc =
        hand_off ? engine_->hand_off(IdArg(info), &socket) : engine_->detach(IdArg(info), &socket);
    if (rc < 0) return Result(env, rc);
    bool had_sender = senders_.detach_into(IdArg(info), &socket);
    uint32_t flags = (socket.listener ? kListener : 0u) | (socket.connecting ? kConnecting : 0u) |
                     (socket.paused ? kPaused : 0u) | (socket.read_eof ? kReadEof : 0u) |
                     (socket.shutdown_requested ? kShutdownRequested : 0u) |
                     (socket.write_shut ? kWriteShut : 0u) |
                     (socket.drain_pending ? kDrainPending : 0u) |
                     (socket.eof_undelivered ? kEofUndelivered : 0u) |
                     (socket.datagram ? kDatagram : 0u) | (had_sender ? kSendThread : 0u);
    Napi::Array out = Napi::Array::New(env, 6);
    out.Set(0u, Napi::Number::New(env, socket.fd));
    out.Set(1u, Napi::Number::New(env, flags));
    out.Set(2u, Napi::Buffer<uint8_t>::Copy(env, socket.unsent.data(), socket.unsent.size()));
    out.Set(3u,
            Napi::Buffer<uint8_t>::Copy(env, socket.undelivered.data(), socket.undelivered.size()));
    out.Set(4u, Napi::Number::New(env, static_cast<double>(socket.max_datagram)));
    Napi::Array accepted = Napi::Array::New(env, socket.accepted.size());
    for (size_t i = 0; i < socket.accepted.size(); ++i)
      accepted.Set(static_cast<uint32_t>(i), Napi::Number::New(env, socket.accepted[i]));
    out.Set(5u, accepted);
    return out;
  }

  // adoptable(fd, duplicate) -> fd | -errno. reactor.adopt() takes only a connected stream socket:
  // ENOTSOCK / EBADF from the kernel, EPROTOTYPE for a datagram socket, EINVAL for a listener.
  // With `duplicate`, returns a close-on-exec duplicate: the caller (node:net's handle) goes on
  // closing its own fd, and the open file stays alive through the copy.
  Napi::Value Adoptable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) return Napi::Number::New(env, -EBADF);
    int fd = info[0].As<Napi::Number>().Int32Value();
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
      return Napi::Number::New(env, -errno);
    if (type != SOCK_STREAM) return Napi::Number::New(env, -EPROTOTYPE);
    int listening = 0;
    len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
      return Napi::Number::New(env, -errno);
    if (listening != 0) return Napi::Number::New(env, -EINVAL);
    if (!BoolOf(info[1])) return Napi::Number::New(env, fd);
    return Napi::Number::New(env, platform::duplicate_socket(fd));
  }

  // adopt(fd, flags, unsent: Buffer, maxDatagram) -> new id | -errno
  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    DetachedSocket socket;
    socket.fd = info[0].As<Napi::Number>().Int32Value();
    uint32_t flags = info[1].As<Napi::Number>().Uint32Value();
    socket.listener = (flags & kListener) != 0;
    socket.connecting = (flags & kConnecting) != 0;
    socket.paused = (flags & kPaused) != 0;
    socket.read_eof = (flags & (kReadEof | kEofUndelivered)) != 0;
    socket.shutdown_requested = (flags & kShutdownRequested) != 0;
    socket.write_shut = (flags & kWriteShut) != 0;
    socket.drain_pending = (flags & kDrainPending) != 0;
    socket.datagram = (flags & kDatagram) != 0;
    socket.max_datagram = static_cast<size_t>(Int64Of(info[3]));
    Napi::Uint8Array unsent = info[2].As<Napi::Uint8Array>();
    socket.unsent.assign(unsent.Data(), unsent.Data() + unsent.ByteLength());
    if (socket.datagram && (flags & kSendThread) != 0)
      return Result(env, senders_.adopt(env, engine_.get(), std::move(socket)));
    return Result(env, engine_->adopt(std::move(socket)));
  }

  // udpOpen(host, port, reusePort, ipv6Only, maxDatagram, reuseAddr) -> id | -errno
  Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    UdpRequest request;
    if (!parse_ip(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                  &request.addr, &request.addr_len)) {
      return Result(env, -EINVAL);
    }
    request.reuse_port = BoolOf(info[2]);
    request.ipv6_only = BoolOf(info[3]);
    request.max_datagram = static_cast<size_t>(Int64Of(info[4]));
    request.reuse_addr = BoolOf(info[5]);
    return Result(env, engine_->udp_open(request));
  }

  // udpSend(id, host | null, port, buffer) -> 0 sent | 1 queued | -errno
  Napi::Value UdpSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    sockaddr_storage to;
    socklen_t to_len = 0;
    bool addressed = info[1].IsString();
    if (addressed && !parse_ip(info[1].As<Napi::String>().Utf8Value(),
                               info[2].As<Napi::Number>().Int32Value(), &to, &to_len)) {
      return Result(env, -EINVAL);
    }
    Napi::Uint8Array data = info[3].As<Napi::Uint8Array>();
    iovec iov{data.Data(), data.ByteLength()};
    OutgoingDatagram datagram{addressed ? &to : nullptr, to_len, &iov, 1};
    DatagramBatchResult result;
    if (senders_.send_batch(IdArg(info), &datagram, 1, &result))
      return Result(env, result.error != 0 ? -result.error : result.queued);
    return Result(env, engine_->udp_send(IdArg(info), addressed ? &to : nullptr, to_len, &iov, 1));
  }

  // udpSendBatch(id, buffers, hosts, ports) -> [taken, queued, errno] | -errno. hosts[i] null: the
  // connected peer. At most kMaxDatagramBatch entries; the engine sends them with sendmmsg.
  Napi::Value UdpSendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    Napi::Array buffers = info[1].As<Napi::Array>();
    Napi::Array hosts = info[2].As<Napi::Array>();
    Napi::Array ports = info[3].As<Napi::Array>();
    uint32_t count = buffers.Length();
    if (count > kMaxDatagramBatch || hosts.Length() != count || ports.Length() != count) {
      return Result(env, -E2BIG);
    }
    batch_addresses_.resize(count);
    iov_scratch_.resize(count);
    batch_datagrams_.resize(count);
    for (uint32_t i = 0; i < count; ++i) {
      iovec& iov = iov_scratch_[i];
      if (!BytesOf(ElementOf(buffers, i), &iov.iov_base, &iov.iov_len)) return Result(env, -EINVAL);
      OutgoingDatagram& datagram = batch_datagrams_[i];
      datagram = OutgoingDatagram{nullptr, 0, &iov, 1};
      Napi::Value host = ElementOf(hosts, i);
      if (!host.IsString()) continue;
      if (!parse_ip(host.As<Napi::String>().Utf8Value(), Int32Of(ElementOf(ports, i)),
                    &batch_addresses_[i], &datagram.to_len)) {
        return Result(env, -EINVAL);
      }
      datagram.to = &batch_addresses_[i];
    }
    DatagramBatchResult result;
    if (!senders_.send_batch(IdArg(info), batch_datagrams_.data(), static_cast<int>(count),
                             &result)) {
      int rc = engine_->udp_send_batch(IdArg(info), batch_datagrams_.data(),
                                       static_cast<int>(count), &result);
      if (rc < 0) return Result(env, rc);
    }
    Napi::Array out = Napi::Array::New(env, 3);
    out.Set(0u, Napi::Number::New(env, result.taken));
    out.Set(1u, Napi::Number::New(env, result.queued));
    out.Set(2u, Napi::Number::New(env, result.error));
    return out;
  }

  // udpSendThread(id) -> 0 | -errno (EOPNOTSUPP where there are none, EEXIST when it has one):
  // from now on the socket's sends run on a thread of their own (datagram_sender.h).
  Napi::Value UdpSendThread(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    int fd = engine_->socket_fd(IdArg(info));
    if (fd < 0) return Result(env, fd);
    return Result(env, senders_.start(env, IdArg(info), fd));
  }

  // udpConnect(id, host, port) -> 0 | -errno: sets the default peer (UDP connect never blocks)
  Napi::Value UdpConnect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    int fd = engine_->socket_fd(IdArg(info));
    if (fd < 0) return Result(env, fd);
    sockaddr_storage to;
    socklen_t to_len = 0;
    if (!parse_ip(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Number>().Int32Value(),
                  &to, &to_len)) {
      return Result(env, -EINVAL);
    }
    return Result(env, connect_datagram(fd, to, to_len));
  }

  // setOption(id, name, value, group?, interface?) -> 0 | -errno
  Napi::Value SetOption(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    int fd = engine_->socket_fd(IdArg(info));
    if (fd < 0) return Result(env, fd);
    std::string name = info[1].As<Napi::String>().Utf8Value();
    int value = Int32Of(info[2]);
    std::string group = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    std::string iface = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
    return Result(env, set_socket_option(fd, name, value, group, iface));
  }

  // getOption(id, name) -> value (>= 0) | -errno
  Napi::Value GetOption(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return Closed(env);
    int fd = engine_->socket_fd(IdArg(info));
    if (fd < 0) return Result(env, fd);
    int value = 0;
    int rc = get_socket_option(fd, info[1].As<Napi::String>().Utf8Value(), &value);
    return Result(env, rc < 0 ? rc : value);
  }

  friend Watcher;
  friend DatagramSenders<NativeBackend>;

  void ReleaseAtExit() {
    watcher_ = nullptr;
    engine_.reset();
  }

  // Stops watching the engine's wait fd and closes the handle, leaving the engine itself alive
  // (JS still detaches its sockets). Done as soon as a poll reports failure, before JS hears of
  // it: the successor JS opens next may get the same fd numbers (the failed wait fd may already be
  // closed), and libuv must not still track a watcher on a number that now means another file.
  void ReleaseWatcher() {
    if (watcher_ == nullptr) return;
    if (engine_) engine_->set_waker(nullptr, nullptr);  // its threads must not wake a closed one
    Watcher::Close(watcher_);
    watcher_ = nullptr;
  }

  void Teardown() {
    senders_.close();
    ReleaseWatcher();
    engine_.reset();
    ReleaseArena();
    if (reported_arena_bytes_ != 0) {
      int64_t ignored = 0;
      napi_adjust_external_memory(Env(), -reported_arena_bytes_, &ignored);
      reported_arena_bytes_ = 0;
    }
  }

  // Read memory (read_arena.h). The current arena is JS's Buffer arena_buffer_ (held here until
  // retired) over the block arena_; in copy mode (this Node refuses external buffers) it is a
  // native block that each batch is copied out of, as before arenas.
  static void FinalizeArena(napi_env, void*, void* hint) {
    auto* release = static_cast<ArenaRelease*>(hint);
    release->pool->give_back(release->block);
    delete release;
  }

  // Makes a block from the pool the current arena. False when memory is exhausted.
  bool TakeArena(napi_env env) {
    uint8_t* block = arena_pool_->take();
    if (block == nullptr) return false;
    arena_used_ = 0;
    if (!copy_mode_) {
      auto* release = new (std::nothrow) ArenaRelease{arena_pool_, block};
      napi_value buffer = nullptr;
      napi_status status = release == nullptr
                               ? napi_generic_failure
                               : napi_create_external_buffer(env, arena_pool_->block_size(), block,
                                                             FinalizeArena, release, &buffer);
      if (status == napi_no_external_buffers_allowed) {
        copy_mode_ = true;
      } else if (status != napi_ok) {
        delete release;
        arena_pool_->give_back(block);
        return false;
      } else {
        arena_buffer_ = Napi::Persistent(Napi::Buffer<uint8_t>(env, buffer));
        ReportArenaMemory(env);
      }
      if (copy_mode_) delete release;
    }
    arena_ = block;
    return true;
  }

  // Tells V8 how much memory the pool's blocks take now (only a hint for the garbage collector's
  // pacing: a failure changes nothing else). Called from the polling thread, where env is valid;
  // blocks freed by finalizers are accounted at the next call.
  void ReportArenaMemory(napi_env env) {
    auto live = static_cast<int64_t>(arena_pool_->live_bytes());
    if (live == reported_arena_bytes_) return;
    int64_t ignored = 0;
    napi_adjust_external_memory(env, live - reported_arena_bytes_, &ignored);
    reported_arena_bytes_ = live;
  }

  // Drops this side's hold on the current arena: its block comes back once JS dropped its views.
  void ReleaseArena() {
    if (arena_ == nullptr) return;
    if (arena_buffer_.IsEmpty()) {
      arena_pool_->give_back(arena_);
    } else {
      arena_buffer_.Reset();
    }
    arena_ = nullptr;
  }

  // Points the sink at room for one batch: after the bytes earlier batches handed to JS (owned
  // mode), or at the start of the arena (transient and copy modes). An owned arena with less than
  // a batch of room left is retired for the next one. False when no memory is left for it.
  bool BeginBatch() {
    if (arena_ == nullptr) return false;
    bool append = !transient_ && !copy_mode_;
    if (append && arena_pool_->block_size() - arena_used_ < slab_size_) {
      // Called from the loop too, where no handle scope is open.
      JsScope scope(Env());
      if (!scope.opened()) return false;
      ReleaseArena();
      if (!TakeArena(Env())) return false;
    }
    size_t base = append ? arena_used_ : 0;
    sink_.slab = arena_;
    sink_.slab_capacity = base + slab_size_;
    sink_.reset(base);
    batch_base_ = base;
    return true;
  }

  // The batch's bytes now belong to JS: later batches go after them.
  void EndBatch() {
    if (!transient_ && !copy_mode_) arena_used_ = sink_.slab_used;
  }

  // The watcher fired (from the loop): status < 0 is a libuv error for the wait fd.
  void OnReady(int status) {
    if (status < 0) {
      ReleaseWatcher();
      Deliver(status, true);
      return;
    }
    Drain(true);
  }

  // A send thread has refused datagrams to report (from the loop): one batch of SEND_ERRORs.
  // Not while the engine has failed (JS is moving the sockets) or inside a dispatch.
  void DeliverSenderErrors() {
    if (dispatching_ || !engine_ || watcher_ == nullptr || !BeginBatch()) {
      senders_.drain_errors(nullptr);  // they wait with their senders for the next signal
      return;
    }
    senders_.drain_errors(&sink_);
    EndBatch();
    if (sink_.count > 0) Deliver(sink_.count, true);
  }

  // The environment can no longer run JS (worker teardown): stop polling, deliver nothing. The
  // environment cleanup hook closes the handle and releases the engine.
  void StopForTeardown() {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  // Runs one engine poll and hands the batch to JS. Returns the event count or -errno.
  int Drain(bool from_loop) {
    if (dispatching_) return 0;
    int count;
    bool fault = (fault_poll_after_ >= 0 && polls_done_ >= fault_poll_after_) ||
                 (fault_after_bytes_ >= 0 &&
                  engine_->counters().bytes_read >= static_cast<uint64_t>(fault_after_bytes_));
    if (fault) {
      count = -fault_poll_errno_;
    } else if (!BeginBatch()) {
      // No memory for the batch's bytes: a failed poll, so JS moves the sockets (nothing lost).
      count = -ENOMEM;
    } else {
      ++polls_done_;
      count = engine_->poll(&sink_);
      EndBatch();
    }
    if (count == 0) return 0;
    if (count < 0) ReleaseWatcher();
    if (!Deliver(count, from_loop)) return count;
    // The engine failed after building that batch: report the failure now, since its wait fd may
    // never fire again.
    if (count > 0 && engine_ && engine_->broken() != 0 && !dispatching_ && BeginBatch()) {
      int failed = engine_->poll(&sink_);
      EndBatch();
      if (failed < 0) {
        ReleaseWatcher();
        Deliver(failed, from_loop);
      }
    }
    return count;
  }

  // Hands one batch (or a negative errno) to onEvents. From the loop, a callback exception is
  // reported as uncaught, as Node's own I/O does; from poll() it propagates to the JS caller.
  // Returns false when the call did not complete (an exception from poll()'s caller side, or an
  // environment that can no longer run JS, in which case polling stops).
  bool Deliver(int count, bool from_loop) {
    napi_env env = Env();
    JsScope scope(env);
    napi_value args[2] = {nullptr, nullptr};
    bool built = scope.opened() && napi_create_int32(env, count, &args[0]) == napi_ok;
    if (built && count > 0 && sink_.slab_used > batch_base_) {
      if (copy_mode_) {
        // One copy per batch: JS may keep the views as long as it likes.
        built = napi_create_buffer_copy(env, sink_.slab_used, arena_, nullptr, &args[1]) == napi_ok;
      } else {
        // The arena itself; DATA offsets point into it.
        args[1] = arena_buffer_.Value();
      }
    } else if (built) {
      built = napi_get_undefined(env, &args[1]) == napi_ok;
    }
    if (!built) {
      if (from_loop) StopForTeardown();
      return false;
    }
    dispatching_ = true;
    bool delivered;
    if (from_loop) {
      delivered = MakeLoopCallback(env, *async_context_, static_cast<napi_ref>(*this),
                                   static_cast<napi_ref>(on_events_), 2, args);
      if (!delivered) StopForTeardown();
    } else {
      delivered =
          CallFromJs(env, static_cast<napi_ref>(*this), static_cast<napi_ref>(on_events_), 2, args);
    }
    dispatching_ = false;
    return delivered;
  }

  std::unique_ptr<Engine> engine_;
  Watcher* watcher_ = nullptr;
  Napi::Reference<Napi::Int32Array> events_array_;
  Napi::FunctionReference on_events_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  size_t slab_size_ = 0;  // room one batch may fill
  std::shared_ptr<ArenaPool> arena_pool_;
  int64_t reported_arena_bytes_ = 0;  // what ReportArenaMemory last told V8
  uint8_t* arena_ = nullptr;
  size_t arena_used_ = 0;  // bytes of the arena earlier batches handed to JS (owned mode)
  size_t batch_base_ = 0;  // where the current batch starts in the arena
  Napi::Reference<Napi::Buffer<uint8_t>> arena_buffer_;
  bool transient_ = false;
  bool copy_mode_ = false;
  std::vector<iovec> iov_scratch_;
  std::vector<sockaddr_storage> batch_addresses_;
  std::vector<OutgoingDatagram> batch_datagrams_;
  EventSink sink_;
  DatagramSenders<NativeBackend> senders_{this};
  bool dispatching_ = false;
  int64_t polls_done_ = 0;
  int64_t fault_poll_after_ = -1;
  int64_t fault_after_bytes_ = -1;
  int fault_poll_errno_ = 0;
};

// setThreadScheduling('normal' | 'batch' | 'idle' | 'fifo' | 'rr', priority) -> 0 | -errno, for
// the calling thread only; -ENOSYS where the platform has no such policies
// (platform::set_thread_scheduling).
Napi::Value SetThreadScheduling(const Napi::CallbackInfo& info) {
  std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  int priority = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  return Napi::Number::New(info.Env(), platform::set_thread_scheduling(name.c_str(), priority));
}

// A CPU list from JS into cpus; false for anything but an array of integers in [0, kMaxCpus).
// JS has checked the list already; this keeps a wrong call from reaching the kernel.
bool CpusOf(const Napi::Value& value, std::vector<int>* cpus) {
  if (!value.IsArray()) return false;
  Napi::Array list = value.As<Napi::Array>();
  cpus->reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value item = ElementOf(list, i);
    if (!item.IsNumber()) return false;
    double cpu = item.As<Napi::Number>().DoubleValue();
    if (!(cpu >= 0 && cpu < platform::kMaxCpus) || cpu != static_cast<int>(cpu)) return false;
    cpus->push_back(static_cast<int>(cpu));
  }
  return true;
}

// setThreadAffinity(cpus: number[]) -> 0 | -errno, for the calling thread only, and
// setOtherThreadsAffinity(cpus) -> threads pinned | -errno, for every other thread.
Napi::Value PinThreads(const Napi::CallbackInfo& info, int (*set)(const int*, int)) {
  std::vector<int> cpus;
  if (!CpusOf(info[0], &cpus)) return Napi::Number::New(info.Env(), -EINVAL);
  return Napi::Number::New(info.Env(), set(cpus.data(), static_cast<int>(cpus.size())));
}

// A CPU list of the calling thread (thread_affinity or allowed_cpus): number[] | -errno.
Napi::Value CpuList(Napi::Env env, int (*read)(int*, int)) {
  std::vector<int> cpus(platform::kMaxCpus);
  int n = read(cpus.data(), platform::kMaxCpus);
  if (n < 0) return Napi::Number::New(env, n);
  Napi::Array list = Napi::Array::New(env, static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) list.Set(static_cast<uint32_t>(i), cpus[static_cast<size_t>(i)]);
  return list;
}

}  // namespace

}  // namespace iomux

static Napi::Object InitIomuxAddon(Napi::Env env, Napi::Object exports) {
  using namespace iomux;
  exports.Set("name", Napi::String::New(env, backend::kName));
  exports.Set("probe", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                int simulated = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
                return Napi::String::New(info.Env(), backend::probe(simulated));
              }));
  exports.Set("NativeBackend", NativeBackend::Define(env));
  export_platform_extras(env, exports);
  exports.Set("unixPathMax", Napi::Number::New(env, unix_path_max()));
  exports.Set("setThreadScheduling", Napi::Function::New(env, SetThreadScheduling));
  exports.Set("setThreadAffinity",
              Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return PinThreads(info, platform::set_thread_affinity);
              }));
  exports.Set("setOtherThreadsAffinity",
              Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return PinThreads(info, platform::set_other_threads_affinity);
              }));
  exports.Set("threadAffinity",
              Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return CpuList(info.Env(), platform::thread_affinity);
              }));
  exports.Set("allowedCpus",
              Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return CpuList(info.Env(), platform::allowed_cpus);
              }));
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("ACCEPT", static_cast<int>(kEventAccept));
  constants.Set("CONNECT", static_cast<int>(kEventConnect));
  constants.Set("DATA", static_cast<int>(kEventData));
  constants.Set("END", static_cast<int>(kEventEnd));
  constants.Set("DRAIN", static_cast<int>(kEventDrain));
  constants.Set("CLOSE", static_cast<int>(kEventClose));
  constants.Set("ACCEPT_ERROR", static_cast<int>(kEventAcceptError));
  constants.Set("EVENT_INTS", static_cast<int>(kEventInts));
  constants.Set("EOF_UNDELIVERED", kEofUndelivered);
  constants.Set("DATAGRAM", static_cast<int>(kEventDatagram));
  constants.Set("DATAGRAM_TRUNCATED", static_cast<int>(kEventDatagramTruncated));
  constants.Set("SEND_ERROR", static_cast<int>(kEventSendError));
  exports.Set("events", constants);
  return exports;
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitIomuxAddon)
