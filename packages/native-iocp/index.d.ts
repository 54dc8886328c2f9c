/** Loader of the iocp backend; throws while the backend is not implemented. */
export declare const iocp: () => unknown;
