// Windows: how the glue learns that an engine has work. libuv on Windows watches sockets only
// (uv_poll), never an I/O completion port or another kernel object, and Node does not export libuv
// to addons there anyway; so an engine's own thread signals instead (Engine::set_waker), and the
// signal reaches Node's thread as an N-API thread-safe function call, which libuv delivers through
// its own completion port (a uv_async underneath). The same interface as PollWatcher
// (poll_watcher.h), so addon.cc drives both alike.
#ifndef IOMUX_PLATFORM_WIN32_WATCHER_H_
#define IOMUX_PLATFORM_WIN32_WATCHER_H_

#include <node_api.h>

#include <atomic>
#include <string>

namespace iomux {

// Owner needs: void OnReady(int status) (Node's thread, when woken while started) and
// void ReleaseAtExit() (worker teardown without close()). wake() is the Engine::Waker: any thread,
// never blocks; wake-ups coalesce, so an owner's poll() must drain everything that is ready.
template <typename Owner>
class WakeWatcher {
 public:
  static WakeWatcher* Open(napi_env env, int /*fd*/, Owner* owner, int* rc) {
    auto* watcher = new WakeWatcher;
    watcher->owner_ = owner;
    watcher->env_ = env;
    napi_value name = nullptr;
    napi_status status = napi_create_string_utf8(env, "iomux.wake", NAPI_AUTO_LENGTH, &name);
    if (status == napi_ok) {
      status = napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr,
                                               watcher, &WakeWatcher::OnCall, &watcher->tsfn_);
    }
    if (status != napi_ok) {
      *rc = -static_cast<int>(status);
      delete watcher;
      return nullptr;
    }
    // Not started yet: keeps nothing alive until Start().
    napi_unref_threadsafe_function(env, watcher->tsfn_);
    napi_add_async_cleanup_hook(env, &WakeWatcher::OnEnvironmentExit, watcher, &watcher->hook_);
    *rc = 0;
    return watcher;
  }

  // Hands the engine its wake-up call (Engine::set_waker).
  template <typename Engine>
  static void Attach(Engine* engine, WakeWatcher* watcher) {
    engine->set_waker(&WakeWatcher::wake, watcher);
  }

  static std::string ErrorText(int rc) {
    return "napi_create_threadsafe_function failed: napi_status " + std::to_string(-rc);
  }

  static void wake(void* data) {
    auto* watcher = static_cast<WakeWatcher*>(data);
    if (watcher->pending_.exchange(true)) return;
    napi_call_threadsafe_function(watcher->tsfn_, nullptr, napi_tsfn_nonblocking);
  }

  int Start() {
    started_ = true;
    UpdateRef();
    // A wake-up that came while stopped was dropped: look again.
    wake(this);
    return 0;
  }
  int Stop() {
    started_ = false;
    UpdateRef();
    return 0;
  }
  void Ref() {
    user_ref_ = true;
    UpdateRef();
  }
  void Unref() {
    user_ref_ = false;
    UpdateRef();
  }

  // The owner must have stopped every thread that may call wake() (Engine::set_waker(nullptr)).
  static void Close(WakeWatcher* watcher) {
    if (watcher->closing_) return;
    watcher->closing_ = true;
    watcher->owner_ = nullptr;
    if (watcher->hook_ != nullptr) napi_remove_async_cleanup_hook(watcher->hook_);
    watcher->hook_ = nullptr;
    // Calls still queued are dropped (abort): OnCall is not run for them. The finalizer frees us.
    napi_release_threadsafe_function(watcher->tsfn_, napi_tsfn_abort);
    delete watcher;
  }

 private:
  void UpdateRef() {
    if (closing_) return;
    if (started_ && user_ref_) {
      napi_ref_threadsafe_function(env_, tsfn_);
    } else {
      napi_unref_threadsafe_function(env_, tsfn_);
    }
  }

  static void OnCall(napi_env env, napi_value /*js_callback*/, void* context, void* /*data*/) {
    if (env == nullptr) return;  // the environment is going away
    auto* watcher = static_cast<WakeWatcher*>(context);
    watcher->pending_ = false;
    if (watcher->started_ && watcher->owner_ != nullptr) watcher->owner_->OnReady(0);
  }

  static void OnEnvironmentExit(napi_async_cleanup_hook_handle hook, void* data) {
    auto* watcher = static_cast<WakeWatcher*>(data);
    napi_remove_async_cleanup_hook(hook);
    watcher->hook_ = nullptr;
    Owner* owner = watcher->owner_;
    // The engine (and its waiter thread) goes first, so nothing calls wake() on a released tsfn.
    if (owner != nullptr) owner->ReleaseAtExit();
    Close(watcher);
  }

  Owner* owner_ = nullptr;
  napi_env env_ = nullptr;
  napi_threadsafe_function tsfn_ = nullptr;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  std::atomic<bool> pending_{false};
  bool started_ = false;
  bool user_ref_ = true;
  bool closing_ = false;
};

}  // namespace iomux

#endif  // IOMUX_PLATFORM_WIN32_WATCHER_H_
