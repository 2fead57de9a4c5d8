/* Symbol export for libtxmsg. The library builds with -fvisibility=hidden,
 * so only declarations marked TXM_API are visible to programs. */
#ifndef TXMSG_API_H
#define TXMSG_API_H

#if defined(__GNUC__)
#define TXM_API __attribute__((visibility("default")))
#else
#define TXM_API
#endif

#endif
