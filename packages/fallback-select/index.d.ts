/** Loaders of the backends this package ships, keyed by backend name; each throws when unusable. */
export declare const select: () => unknown;
export declare const blocking_io: () => unknown;
