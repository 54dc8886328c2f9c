{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      "target_name": "iomux_kqueue",
      "sources": [
        "../../native/src/addon.cc",
        "../../native/src/datagram.cc",
        "../../native/src/datagram_sender.cc",
        "../../native/src/readiness.cc",
        "../../native/src/notifier.cc",
        "../../native/src/platform_posix.cc",
        "../../native/src/socket_options.cc",
        "../../native/src/socket_util.cc",
        "../../native/src/stream.cc",
        "../../native/src/thread_util.cc",
        "../../native/src/write_queue.cc",
        "src/kqueue.cc",
      ],
      "conditions": [
        ["OS=='mac' or OS=='freebsd'", {"sources": ["../../native/src/platform_bsd.cc"]}],
        # TEST-ONLY: on Linux the same backend compiles against the kqueue emulation over epoll
        # (emulation/), so the test suites run it here; @iomux/core loads this build only when
        # IOMUX_KQUEUE_EMULATION=1, and io_model 'auto' never picks it.
        ["OS=='linux'", {
          "include_dirs": ["emulation"],
          "sources": ["../../native/src/platform_linux.cc", "emulation/kqueue_emulation.cc"],
        }],
      ],
    },
  ],
}
