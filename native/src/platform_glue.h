// The platform pieces of the N-API glue (addon.cc): how it learns that an engine has work, and
// what the addon exports beyond NativeBackend. Included by addon.cc only, after napi.h.
//   POSIX:   a uv_poll on the engine's wait fd (PollWatcher), and PreciseTimer where the platform
//            has a one-shot timer fd.
//   Windows: the engine's own wake-up call through an N-API thread-safe function (WakeWatcher,
//            platform_win32_watcher.h: libuv watches no kernel object there but sockets, and Node
//            does not export libuv to addons), and handleCount() for the tests' leak check.
#ifndef IOMUX_PLATFORM_GLUE_H_
#define IOMUX_PLATFORM_GLUE_H_

#include "platform.h"

#if defined(IOMUX_PLATFORM_WIN32)

#include "platform_win32_watcher.h"

namespace iomux {

template <typename Owner>
using EngineWatcher = WakeWatcher<Owner>;

inline void export_platform_extras(Napi::Env env, Napi::Object exports) {
  // The tests' stand-in for an fd count: the process's open kernel handles (sockets are handles)
  // where Windows reports them, else (Wine reports 0) the sockets iomux opened and has not closed.
  exports.Set("handleCount",
              Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                DWORD count = 0;
                if (!GetProcessHandleCount(GetCurrentProcess(), &count)) count = 0;
                double n = count > 0 ? count : win32::open_socket_count();
                return Napi::Number::New(info.Env(), n);
              }));
}

}  // namespace iomux

#else

#include "poll_watcher.h"
#include "precise_timer.h"

namespace iomux {

template <typename Owner>
using EngineWatcher = PollWatcher<Owner>;

inline void export_platform_extras(Napi::Env env, Napi::Object exports) {
  if (platform::kHasPreciseTimer) exports.Set("PreciseTimer", PreciseTimer::Define(env));
}

}  // namespace iomux

#endif

#endif  // IOMUX_PLATFORM_GLUE_H_
