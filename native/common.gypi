# Build settings and shared sources every backend addon includes. A backend's binding.gyp names
# only its own kernel-facing file(s).
{
  "target_defaults": {
    "include_dirs": [
      "<!(node -p \"require('node-addon-api').include_dir\")",
      # Relative to this file (gyp resolves an included file's paths from where it lies), so the
      # same settings serve the repository (../../native) and a packed tarball (native/).
      "include",
      "src",
    ],
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "cflags": ["-Wall", "-Wextra", "-Werror", "-O2"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers", "-O2"],
    "conditions": [
      ["'<!(node -p \"process.env.IOMUX_SANITIZE || ''\")'!=''", {
        "cflags": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
        "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
        "ldflags": ["-fsanitize=address,undefined"],
      }],
    ],
  },
}
