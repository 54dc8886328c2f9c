// PreciseTimer, the sub-millisecond one-shot timer of the addon (platform::OneShotTimer: a timerfd
// on Linux, an EVFILT_TIMER on macOS and FreeBSD). Part of the
// N-API glue: included only by addon.cc, the one translation unit that includes napi.h (with the
// settings it defines first).
#ifndef IOMUX_PRECISE_TIMER_H_
#define IOMUX_PRECISE_TIMER_H_

#include <napi.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "js_args.h"
#include "js_call.h"
#include "platform.h"
#include "poll_watcher.h"

namespace iomux {

// A one-shot timer with sub-millisecond resolution: libuv timers count whole milliseconds, so a
// tick loop waiting on setTimeout starts ticks up to 1 ms late. This is the platform's one-shot
// timer fd watched by a uv_poll in Node's own loop; the callback runs from the loop like any I/O
// callback.
class PreciseTimer : public Napi::ObjectWrap<PreciseTimer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PreciseTimer",
                       {
                           InstanceMethod<&PreciseTimer::Arm>("arm"),
                           InstanceMethod<&PreciseTimer::Disarm>("disarm"),
                           InstanceMethod<&PreciseTimer::Close>("close"),
                       });
  }

  // new PreciseTimer(onFire)
  explicit PreciseTimer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PreciseTimer>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) {
      Napi::TypeError::New(env, "PreciseTimer(onFire)").ThrowAsJavaScriptException();
      return;
    }
    int rc = timer_.open();
    if (rc != 0) {
      Napi::Error e = Napi::Error::New(env, std::string("timer: ") + std::strerror(-rc));
      e.Set("errno", Napi::Number::New(env, -rc));
      e.ThrowAsJavaScriptException();
      return;
    }
    watcher_ = PollWatcher<PreciseTimer>::Open(env, timer_.fd(), this, &rc);
    if (watcher_ == nullptr) {
      ReleaseAtExit();
      Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc))
          .ThrowAsJavaScriptException();
      return;
    }
    on_fire_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "iomux.timer");
  }

  ~PreciseTimer() override { Teardown(); }

 private:
  friend struct PollWatcher<PreciseTimer>;

  // arm(ms): fires once, ms (fractional) from now; re-arming replaces the previous deadline.
  // Returns 0 or -errno.
  Napi::Value Arm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (watcher_ == nullptr) return Napi::Number::New(env, -EBADF);
    // NaN (also what an unreadable argument gives) is EINVAL below.
    double ms = DoubleOf(info[0], NAN);
    if (!(ms >= 0 && ms <= kMaxDelayMs)) return Napi::Number::New(env, -EINVAL);
    // A zero delay would disarm a timerfd: the shortest delay is 1 ns.
    auto ns = std::max<int64_t>(1, static_cast<int64_t>(ms * 1e6));
    int rc = timer_.arm(ns);
    if (rc != 0) return Napi::Number::New(env, rc);
    rc = uv_poll_start(&watcher_->poll, UV_READABLE, &PreciseTimer::OnFire);
    return Napi::Number::New(env, rc);
  }

  Napi::Value Disarm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (watcher_ == nullptr) return Napi::Number::New(env, -EBADF);
    int rc = timer_.disarm();
    if (rc != 0) return Napi::Number::New(env, rc);
    return Napi::Number::New(env, uv_poll_stop(&watcher_->poll));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Teardown();
    return info.Env().Undefined();
  }

  static void OnFire(uv_poll_t* handle, int /*status*/, int /*events*/) {
    auto* self = static_cast<PreciseTimer*>(handle->data);
    // False: a re-arm between the expiry and this callback took it back; it fires again later.
    if (!self->timer_.consume()) return;
    uv_poll_stop(handle);
    napi_env env = self->Env();
    JsScope scope(env);
    // A false result means the environment is going away: the timer stays stopped.
    if (scope.opened()) {
      MakeLoopCallback(env, *self->async_context_, static_cast<napi_ref>(*self),
                       static_cast<napi_ref>(self->on_fire_), 0, nullptr);
    }
  }

  void ReleaseAtExit() {
    watcher_ = nullptr;
    timer_.close();
  }

  void Teardown() {
    if (watcher_ != nullptr) PollWatcher<PreciseTimer>::Close(watcher_);
    ReleaseAtExit();
  }

  static constexpr double kMaxDelayMs = 2147483647.0;  // setTimeout's ceiling
  platform::OneShotTimer timer_;
  PollWatcher<PreciseTimer>* watcher_ = nullptr;
  Napi::FunctionReference on_fire_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

}  // namespace iomux

#endif  // IOMUX_PRECISE_TIMER_H_
