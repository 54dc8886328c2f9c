{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      # The shared core, compiled once for both addons: two targets compiling the same
      # shared native sources would write the same object files and race under make -j. The glue
      # (addon.cc) is compiled per addon through src/*_addon.cc, since nothing links it in.
      "target_name": "iomux_fallback_core",
      "type": "static_library",
      "cflags": ["-fPIC"],
      "cflags_cc": ["-fPIC"],
      "sources": [
        "../../native/src/datagram.cc",
        "../../native/src/notifier.cc",
        "../../native/src/platform_posix.cc",
        "../../native/src/readiness.cc",
        "../../native/src/socket_options.cc",
        "../../native/src/stream.cc",
        "../../native/src/thread_util.cc",
        "../../native/src/write_queue.cc",
      ],
      "conditions": [
        # UDP send threads (datagram_senders.h): POSIX only.
        ["OS!='win'", {"sources": ["../../native/src/datagram_sender.cc"]}],
        ["OS=='linux'", {"sources": ["../../native/src/platform_linux.cc", "../../native/src/socket_util.cc"]}],
        ["OS=='mac' or OS=='freebsd'", {"sources": ["../../native/src/platform_bsd.cc", "../../native/src/socket_util.cc"]}],
        # Windows: select over Winsock (scripts/build-win32.mjs builds it; blocking_io is not built
        # there, see README "Backends").
        ["OS=='win'", {
          "sources": ["../../native/src/platform_win32.cc", "../../native/src/platform_win32_sockets.cc"],
          "include_dirs": ["../../native/src/platform_win32_include"],
          "libraries": ["-lws2_32", "-lmswsock"],
        }],
      ],
    },
    {
      "target_name": "iomux_select",
      "dependencies": ["iomux_fallback_core"],
      "sources": ["src/select.cc", "src/select_addon.cc"],
    },
    {
      "target_name": "iomux_blocking_io",
      "dependencies": ["iomux_fallback_core"],
      "conditions": [["OS=='win'", {"type": "none"}]],
      "sources": [
        "src/blocking_io.cc",
        "src/blocking_interrupt.cc",
        "src/blocking_migrate.cc",
        "src/blocking_pin.cc",
        "src/blocking_threads.cc",
        "src/blocking_udp.cc",
        "src/blocking_io_addon.cc",
      ],
    },
  ],
}
