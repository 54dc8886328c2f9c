/** Loader of the iocp backend (Windows only); throws elsewhere, with the reason. */
export declare const iocp: () => unknown;
