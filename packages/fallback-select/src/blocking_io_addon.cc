// The shared N-API glue, compiled into this addon under an object name of its own: two targets
// of one binding.gyp compiling ../../native/src/addon.cc directly share one object path and race
// under make -j (one addon then links a half-written object and fails to register).
#include "addon.cc"  // NOLINT(build/include)
