/* txm_version: the library's own version, fixed when it was built. */
#include "txmsg/version.h"

const char *txm_version(void)
{
    return TXM_VERSION_STRING;
}
