// Tests that cannot pass under Wine for reasons outside iomux, skipped BY NAME with the reason
// (the runner prints each one). Every entry names what was seen under Wine 8.0; none hides a
// defect of a backend, and none applies on a real Windows runner (.github/workflows/windows.yml
// runs them there).
export const wineSkips = [
  {
    test: 'names each sender by its own address, again and again',
    reason:
      'Wine 8.0 reports every loopback sender as 127.0.0.1: even node:dgram (libuv) sockets bound ' +
      'to 127.0.0.2 and 127.0.0.3 arrive "from 127.0.0.1" at a node:dgram receiver under Wine',
  },
  {
    test: 'timers and promises keep running while the reactor is busy',
    reason:
      'under Wine 8.0 a 1 ms setInterval fires 6 times in 500 ms while 8 node:net clients talk to ' +
      'a plain node:net echo server (no iomux at all), 208 times when idle; the test asks for > 20',
  },
  {
    test: "udp: select > reports an ICMP port unreachable as 'error' and keeps working",
    reason:
      'under Wine 8.0 the port-unreachable of a connected UDP socket reaches an overlapped ' +
      'receive only (iocp gets ERROR_PORT_UNREACHABLE and passes this test): Winsock select() ' +
      'never reports the socket and no non-blocking WSARecvFrom of the whole udp suite failed ' +
      'with anything but WSAEMSGSIZE (seen with a debug build); not known for Windows itself',
  },
];
