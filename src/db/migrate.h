/* Schema migrations of the txmsg tables, one list per dialect. */
#ifndef TXM_DB_MIGRATE_H
#define TXM_DB_MIGRATE_H

#include "txmsg/db.h"

/* The newest schema version this build knows. */
#define TXM__SCHEMA_VERSION 3

#endif
