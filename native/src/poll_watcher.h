// A uv_poll on an fd an N-API object keeps, safe across worker teardown (see PollWatcher).
#ifndef IOMUX_POLL_WATCHER_H_
#define IOMUX_POLL_WATCHER_H_

#include <node_api.h>
#include <uv.h>

#include <string>

namespace iomux {

// A uv_poll on an fd its owner keeps, plus what must outlive the owner until libuv has closed the
// handle. A worker thread may end without close(): the cleanup hook then releases the owner's
// resources and closes the handle while the addon's code is still loaded, holding the environment
// until the close callback has run. Owner::ReleaseAtExit() drops the owner's pointer to it.
template <typename Owner>
struct PollWatcher {
  uv_poll_t poll;  // first member: the close callback casts the handle back
  Owner* owner = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;
  bool closing = false;

  // Returns the watcher, or null with *rc set to a libuv error.
  static PollWatcher* Open(napi_env env, int fd, Owner* owner, int* rc) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    auto* watcher = new PollWatcher;
    *rc = uv_poll_init(loop, &watcher->poll, fd);
    if (*rc != 0) {
      delete watcher;
      return nullptr;
    }
    watcher->poll.data = owner;
    watcher->owner = owner;
    napi_add_async_cleanup_hook(env, &PollWatcher::OnEnvironmentExit, watcher, &watcher->hook);
    return watcher;
  }

  // The engine needs no wake-up call: libuv watches its wait fd.
  template <typename Engine>
  static void Attach(Engine* /*engine*/, PollWatcher* /*watcher*/) {}

  static std::string ErrorText(int rc) { return std::string("uv_poll_init: ") + uv_strerror(rc); }

  // Watching for readability: Owner::OnReady(status) runs from the loop each time it fires.
  int Start() {
    return uv_poll_start(&poll, UV_READABLE, [](uv_poll_t* handle, int status, int /*events*/) {
      static_cast<Owner*>(handle->data)->OnReady(status);
    });
  }
  int Stop() { return uv_poll_stop(&poll); }
  void Ref() { uv_ref(reinterpret_cast<uv_handle_t*>(&poll)); }
  void Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&poll)); }

  // Stops and closes the handle; the owner must not use it afterwards.
  static void Close(PollWatcher* watcher) {
    if (watcher->closing) return;
    watcher->closing = true;
    watcher->owner = nullptr;
    uv_poll_stop(&watcher->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&watcher->poll), [](uv_handle_t* handle) {
      auto* closed = reinterpret_cast<PollWatcher*>(handle);
      if (closed->hook != nullptr) napi_remove_async_cleanup_hook(closed->hook);
      delete closed;
    });
  }

  static void OnEnvironmentExit(napi_async_cleanup_hook_handle hook, void* data) {
    auto* watcher = static_cast<PollWatcher*>(data);
    watcher->hook = hook;
    Owner* owner = watcher->owner;
    Close(watcher);  // stops polling before the owner closes the fd
    if (owner != nullptr) owner->ReleaseAtExit();
  }
};

}  // namespace iomux

#endif  // IOMUX_POLL_WATCHER_H_
