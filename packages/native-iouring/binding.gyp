{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      "target_name": "iomux_iouring",
      "sources": [
        "../../native/src/addon.cc",
        "../../native/src/datagram.cc",
        "../../native/src/datagram_sender.cc",
        "../../native/src/notifier.cc",
        "../../native/src/platform_posix.cc",
        "../../native/src/platform_linux.cc",
        "../../native/src/socket_options.cc",
        "../../native/src/socket_util.cc",
        "../../native/src/stream.cc",
        "../../native/src/thread_util.cc",
        "../../native/src/write_queue.cc",
        "src/uring.cc",
        "src/iouring.cc",
        "src/iouring_calls.cc",
        "src/iouring_completions.cc",
        "src/iouring_migrate.cc",
        "src/iouring_probe.cc",
        "src/iouring_submit.cc",
      ],
    },
  ],
}
