/* The page's files, embedded in the binary at build time
 * (embed_assets.cmake writes the table from cli/console/web/). */
#ifndef TXM_CLI_CONSOLE_ASSETS_H
#define TXM_CLI_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct console_asset {
    const char *path;          /* relative to cli/console/web/, such as "vendor/x.js" */
    const unsigned char *data; /* its bytes (one 0 byte follows them) */
    size_t len;                /* bytes, without that 0 */
} console_asset;

/* Every file, then an entry whose path is NULL. */
extern const console_asset console_assets[];
extern const size_t console_assets_count;

#endif
