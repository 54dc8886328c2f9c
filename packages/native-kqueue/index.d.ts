/** Loader of the kqueue backend; throws while the backend is not implemented. */
export declare const kqueue: () => unknown;
