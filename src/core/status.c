/* Status texts and names, generated from the one status list. */
#include "txmsg/status.h"

#include <stddef.h>

const char *txm_strerror(txm_status st)
{
    switch (st) {
#define TXM_STATUS_TEXT(name, text)                                                                \
    case TXM_##name:                                                                               \
        return text;
        TXM_STATUS_MAP(TXM_STATUS_TEXT)
#undef TXM_STATUS_TEXT
    }
    return "unknown status";
}

const char *txm_status_name(txm_status st)
{
    switch (st) {
#define TXM_STATUS_NAME(name, text)                                                                \
    case TXM_##name:                                                                               \
        return #name;
        TXM_STATUS_MAP(TXM_STATUS_NAME)
#undef TXM_STATUS_NAME
    }
    return "UNKNOWN";
}
