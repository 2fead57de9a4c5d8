/* What the full-disk tests share: counting rows and one unit of work that
 * writes a row and its event. */
#ifndef TXM_DISKFULL_H
#define TXM_DISKFULL_H

#include "txmsg/txmsg.h"

/* The single integer sql answers; fails the test when it cannot run. */
long long diskfull_count(txm_db *db, const char *sql);

/* Inserts id into the table items and publishes item--added in one unit of
 * work. Returns the status of the first step that failed (the unit is
 * rolled back then), else the commit's. */
txm_status diskfull_add_item(txm_db *db, const char *id, txm_error *err);

#endif
