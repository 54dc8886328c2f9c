/** Loaders of the backends this package ships, keyed by backend name; each throws when unusable. */
export declare const io_uring: () => unknown;
