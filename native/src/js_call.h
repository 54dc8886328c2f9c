// Calls into JS from libuv callbacks, safe while a worker thread's environment is torn down.
//
// A worker that is terminated or calls process.exit() keeps running its loop's callbacks during
// teardown, but its environment can no longer run JS: every N-API call that could run JS then
// fails. node-addon-api's wrappers answer a failure by throwing, and a throw that itself fails is a
// fatal error that aborts the whole process. So these helpers use the C API, check every status
// and never throw: a caller that gets `false` stops its watcher and returns.
#pragma once

#include <node_api.h>

#include <cstddef>

namespace iomux {

// True while `env` can run JS. napi_coerce_to_number passes through N-API's preamble, which fails
// when the environment is terminating (or an exception is pending); on a number it runs no JS.
inline bool CanRunJs(napi_env env) {
  napi_value probe = nullptr;
  napi_value coerced = nullptr;
  if (napi_create_int32(env, 0, &probe) != napi_ok) return false;
  return napi_coerce_to_number(env, probe, &coerced) == napi_ok;
}

// Calls `function_ref` with `receiver_ref` as `this` from a libuv callback, through
// napi_make_callback so that microtasks and nextTicks run afterwards as after Node's own I/O.
// The caller opened a handle scope. An exception the callback threw is reported as uncaught (as
// Node does for its own I/O callbacks) only while the environment can still run JS; during
// teardown it is dropped. Returns false when the environment cannot run JS.
inline bool MakeLoopCallback(napi_env env, napi_async_context context, napi_ref receiver_ref,
                             napi_ref function_ref, size_t argc, const napi_value* argv) {
  napi_value receiver = nullptr;
  napi_value function = nullptr;
  if (napi_get_reference_value(env, receiver_ref, &receiver) != napi_ok || receiver == nullptr ||
      napi_get_reference_value(env, function_ref, &function) != napi_ok || function == nullptr) {
    return false;
  }
  napi_value result = nullptr;
  if (napi_make_callback(env, context, receiver, function, argc, argv, &result) == napi_ok) {
    return true;
  }
  bool pending = false;
  napi_value error = nullptr;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &error) != napi_ok) {
    error = nullptr;
  }
  if (!CanRunJs(env)) return false;
  // The status is not checked: if even reporting fails, there is no one left to report to.
  if (error != nullptr) napi_fatal_exception(env, error);
  return true;
}

// The same call made synchronously from a JS-initiated native method (e.g. poll()): an exception
// stays pending and propagates to that JS caller when the method returns. Returns false when the
// call failed (thrown or environment going away).
inline bool CallFromJs(napi_env env, napi_ref receiver_ref, napi_ref function_ref, size_t argc,
                       const napi_value* argv) {
  napi_value receiver = nullptr;
  napi_value function = nullptr;
  if (napi_get_reference_value(env, receiver_ref, &receiver) != napi_ok || receiver == nullptr ||
      napi_get_reference_value(env, function_ref, &function) != napi_ok || function == nullptr) {
    return false;
  }
  napi_value result = nullptr;
  return napi_call_function(env, receiver, function, argc, argv, &result) == napi_ok;
}

// A handle scope that is closed on every path; `opened()` is false when it could not be opened.
class JsScope {
 public:
  explicit JsScope(napi_env env) : env_(env) {
    if (napi_open_handle_scope(env, &scope_) != napi_ok) scope_ = nullptr;
  }
  ~JsScope() {
    if (scope_ != nullptr) napi_close_handle_scope(env_, scope_);
  }
  JsScope(const JsScope&) = delete;
  JsScope& operator=(const JsScope&) = delete;
  bool opened() const { return scope_ != nullptr; }

 private:
  napi_env env_;
  napi_handle_scope scope_ = nullptr;
};

}  // namespace iomux
