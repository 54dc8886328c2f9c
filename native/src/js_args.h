// Reads the arguments of JS-initiated native methods without node-addon-api's To*() coercions.
//
// A worker that is terminated can be stopped in the middle of a native method: from then on its
// environment can no longer run JS, and napi_coerce_to_bool / _number / _string fail (they pass
// through N-API's preamble). Value::ToBoolean() and its kin answer that failure with an empty
// value whose accessor calls Error::New on a null env, a fatal error that aborts the whole
// process. These helpers read a value of the expected type directly (no preamble), coerce only
// what is not, check every status and fall back instead of throwing.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace iomux {

// Boolean(value); false when N-API cannot read it.
inline bool BoolOf(const Napi::Value& value) {
  napi_env env = value.Env();
  bool flag = false;
  if (napi_get_value_bool(env, value, &flag) == napi_ok) return flag;
  napi_value coerced = nullptr;
  if (napi_coerce_to_bool(env, value, &coerced) != napi_ok) return false;
  return napi_get_value_bool(env, coerced, &flag) == napi_ok && flag;
}

// The value as a number (coerced if it is not one); nullptr when N-API cannot read it.
inline napi_value NumberValueOf(const Napi::Value& value) {
  napi_env env = value.Env();
  napi_valuetype type = napi_undefined;
  if (napi_typeof(env, value, &type) != napi_ok) return nullptr;
  if (type == napi_number) return value;
  napi_value coerced = nullptr;
  return napi_coerce_to_number(env, value, &coerced) == napi_ok ? coerced : nullptr;
}

// Number(value) read by N-API's getter `get` (napi_get_value_int64, _int32 or _double: as N-API
// converts it, NaN and infinities 0 for the integers, out of range clamped); `fallback` when N-API
// cannot read it.
template <typename T>
inline T NumberOf(const Napi::Value& value, napi_status (*get)(napi_env, napi_value, T*),
                  T fallback) {
  napi_value number = NumberValueOf(value);
  T out{};
  if (number == nullptr || get(value.Env(), number, &out) != napi_ok) return fallback;
  return out;
}

inline int64_t Int64Of(const Napi::Value& value, int64_t fallback = 0) {
  return NumberOf<int64_t>(value, napi_get_value_int64, fallback);
}

inline int32_t Int32Of(const Napi::Value& value, int32_t fallback = 0) {
  return NumberOf<int32_t>(value, napi_get_value_int32, fallback);
}

inline double DoubleOf(const Napi::Value& value, double fallback) {
  return NumberOf<double>(value, napi_get_value_double, fallback);
}

// array[index]; an empty value (IsEmpty(), and every helper above falls back on it) when N-API
// cannot read it. Object::Get would return a value with a null env, which aborts once used.
inline Napi::Value ElementOf(const Napi::Array& array, uint32_t index) {
  napi_value element = nullptr;
  if (napi_get_element(array.Env(), array, index, &element) != napi_ok) return Napi::Value();
  return Napi::Value(array.Env(), element);
}

// The bytes of a Uint8Array (a Buffer); false for anything else or when N-API cannot read it.
inline bool BytesOf(const Napi::Value& value, void** data, size_t* length) {
  if (value.IsEmpty()) return false;
  napi_typedarray_type type = napi_int8_array;
  return napi_get_typedarray_info(value.Env(), value, &type, length, data, nullptr, nullptr) ==
             napi_ok &&
         type == napi_uint8_array;
}

// String(value) as UTF-8; `fallback` when N-API cannot read it.
inline std::string TextOf(const Napi::Value& value, const char* fallback = "?") {
  napi_env env = value.Env();
  napi_value text = nullptr;
  size_t length = 0;
  if (napi_coerce_to_string(env, value, &text) != napi_ok ||
      napi_get_value_string_utf8(env, text, nullptr, 0, &length) != napi_ok) {
    return fallback;
  }
  std::string out(length, '\0');
  if (napi_get_value_string_utf8(env, text, &out[0], length + 1, &length) != napi_ok)
    return fallback;
  out.resize(length);
  return out;
}

}  // namespace iomux
