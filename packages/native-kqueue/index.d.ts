/** Loader of the kqueue backend addon (on Linux: the test-only build over the kqueue emulation). */
export declare const kqueue: () => unknown;
