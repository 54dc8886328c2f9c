{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      "target_name": "iomux_epoll",
      "sources": [
        "../../native/src/addon.cc",
        "../../native/src/datagram.cc",
        "../../native/src/datagram_sender.cc",
        "../../native/src/readiness.cc",
        "../../native/src/notifier.cc",
        "../../native/src/platform_posix.cc",
        "../../native/src/platform_linux.cc",
        "../../native/src/socket_options.cc",
        "../../native/src/socket_util.cc",
        "../../native/src/stream.cc",
        "../../native/src/thread_util.cc",
        "../../native/src/write_queue.cc",
        "src/epoll.cc",
      ],
    },
  ],
}
