/* The outbox mode of a PostgreSQL database: table rows, or transactional
 * logical decoding messages (txmsg/outbox.h), kept as the database's
 * setting "outbox_mode". */
#include "store/store_int.h"
#include "txmsg/outbox.h"

txm_outbox_mode txm_outbox_mode_get(const txm_db *db)
{
    return db == NULL ? TXM_OUTBOX_TABLE : txm__db_outbox_mode(db);
}

const char *txm_outbox_mode_name(txm_outbox_mode mode)
{
    switch (mode) {
    case TXM_OUTBOX_TABLE:
        return "table";
    case TXM_OUTBOX_MESSAGES:
        return "messages";
    }
    return "";
}

txm_status txm_outbox_set_mode(txm_db *db, txm_outbox_mode mode, txm_error *err)
{
    if (db == NULL || (mode != TXM_OUTBOX_TABLE && mode != TXM_OUTBOX_MESSAGES))
        return txm_errf(err, TXM_INVALID, "outbox_set_mode: NULL db or unknown mode");
    if (txm__db_dialect(db) != TXM__DIALECT_PG) {
        if (mode == TXM_OUTBOX_TABLE)
            return TXM_OK;
        return txm_errf(err, TXM_UNSUPPORTED, "outbox: messages mode needs PostgreSQL");
    }
    txm_status st = txm__db_setting_put(db, "outbox_mode", txm_outbox_mode_name(mode), err);
    if (st == TXM_OK)
        txm__db_set_outbox_mode(db, mode);
    return st;
}
