// Windows: the CRT's <fcntl.h>, plus O_CLOEXEC (its _O_NOINHERIT) used by the shared core.
#include_next <fcntl.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC _O_NOINHERIT
#endif
