// Windows: <arpa/inet.h> of the POSIX socket API, from Winsock (see platform_win32_posix.h).
#include "../platform_win32_posix.h"
