// blocking_io's threads are detached and may still be returning from a blocking call, or running
// a socket's last destructor, after the engine that started them is gone. When the engine lived
// in a worker thread that was the only one to load this addon, Node unloads the addon as the
// worker's environment goes away, and those threads would run unmapped code (SIGSEGV). The data
// they use is theirs (shared Sock and Hub objects); the code must stay too.
#ifndef IOMUX_BLOCKING_PIN_H_
#define IOMUX_BLOCKING_PIN_H_

namespace iomux {

// Marks this addon's shared object never to be unloaded (RTLD_NODELETE), once per process.
// Returns 0 or -errno (ENOENT when the object cannot be found or pinned).
int pin_addon_code();

}  // namespace iomux

#endif  // IOMUX_BLOCKING_PIN_H_
