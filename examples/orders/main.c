/* orders-service: the Orders service of the example. Wires the app
 * runtime (environment, database, transport, HTTP, consumer) to this
 * service's schema, routes and message handlers, and runs until SIGTERM or
 * SIGINT. Configuration: TXMSG_DATABASE_URL, TXMSG_BROKER_URL, PORT
 * (default 9702), TXMSG_BIND_ADDRESS. */
#include <signal.h>

#include "orders.h"

int main(int argc, char **argv)
{
    int rc = ex_command_line(argc, argv, ORDERS_SOURCE,
                             "The Orders service of the txmsg example: orders, approved or "
                             "rejected\nby the Customers service through messages.",
                             ORDERS_PORT);
    if (rc >= 0)
        return rc;
    /* A client that goes away must not end the process, nor a file that
     * reaches RLIMIT_FSIZE: that write fails (EFBIG, TXM_NO_SPACE). */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    txm_app_options o;
    txm_app_options_init(&o, ORDERS_SOURCE, ORDERS_PORT);
    txm_app *app = NULL;
    txm_error err = {0};
    txm_status st = txm_app_open(&o, &app, &err);
    orders_svc svc = {.db = txm_app_db(app), .log = txm_app_logger(app)};
    if (st == TXM_OK)
        st = orders_schema(svc.db, &err);
    if (st == TXM_OK)
        st = orders_http_register(app, &svc, &err);
    if (st == TXM_OK)
        st = orders_handlers_register(app, &svc, &err);
    if (st == TXM_OK)
        st = txm_app_run(app, &err);
    if (st != TXM_OK) {
        txm_logger lg;
        txm_logger_init(&lg, ORDERS_SOURCE);
        txm_log_write(&lg, TXM_LOG_ERROR, NULL, "cannot run: %s: %s", txm_status_name(st),
                      err.text);
    }
    txm_app_close(app);
    return st == TXM_OK ? 0 : 1;
}
