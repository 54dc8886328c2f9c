{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      "target_name": "iomux_select",
      "sources": [
        "../../native/src/addon.cc",
        "../../native/src/readiness.cc",
        "../../native/src/socket_util.cc",
        "../../native/src/write_queue.cc",
        "src/fallback_util.cc",
        "src/select.cc",
      ],
    },
    {
      "target_name": "iomux_blocking_io",
      "sources": [
        "../../native/src/addon.cc",
        "../../native/src/socket_util.cc",
        "../../native/src/write_queue.cc",
        "src/fallback_util.cc",
        "src/blocking_io.cc",
      ],
    },
  ],
}
