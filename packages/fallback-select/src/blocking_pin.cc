#include "blocking_pin.h"

#include <dlfcn.h>

#include <cerrno>

namespace iomux {

namespace {

int pin_once() {
  Dl_info info{};
  // Any function of this object names it.
  if (dladdr(reinterpret_cast<void*>(&pin_addon_code), &info) == 0 || info.dli_fname == nullptr) {
    return -ENOENT;
  }
  // RTLD_NOLOAD: the object is loaded already; this only takes another reference and sets
  // RTLD_NODELETE on it. The handle is kept on purpose: the reference is never given back.
  void* handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  return handle == nullptr ? -ENOENT : 0;
}

}  // namespace

int pin_addon_code() {
  static const int result = pin_once();
  return result;
}

}  // namespace iomux
