{
  "includes": ["../../native/common.gypi"],
  "targets": [
    {
      "target_name": "iomux_iocp",
      "conditions": [
        ["OS=='win'", {
          "sources": [
            "../../native/src/addon.cc",
            "../../native/src/datagram.cc",
            "../../native/src/platform_win32.cc",
            "../../native/src/platform_win32_sockets.cc",
            "../../native/src/socket_options.cc",
            "../../native/src/stream.cc",
            "../../native/src/write_queue.cc",
            "src/iocp.cc",
            "src/iocp_calls.cc",
            "src/iocp_ops.cc",
          ],
          "include_dirs": ["../../native/src/platform_win32_include"],
          "libraries": ["-lws2_32", "-lmswsock"],
        }, {
          "type": "none",
        }],
      ],
    },
  ],
}
