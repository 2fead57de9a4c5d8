/* customers-service: the Customers service of the example. Wires the app
 * runtime (environment, database, transport, HTTP, consumer) to this
 * service's schema, routes and message handlers, and runs until SIGTERM or
 * SIGINT. Configuration: TXMSG_DATABASE_URL, TXMSG_BROKER_URL, PORT
 * (default 9701), TXMSG_BIND_ADDRESS. */
#include <signal.h>

#include "customers.h"

int main(int argc, char **argv)
{
    int rc = ex_command_line(argc, argv, CUSTOMERS_SOURCE,
                             "The Customers service of the txmsg example: customers and their "
                             "credit,\nreserved and released as orders are created and cancelled.",
                             CUSTOMERS_PORT);
    if (rc >= 0)
        return rc;
    /* A client that goes away must not end the process, nor a file that
     * reaches RLIMIT_FSIZE: that write fails (EFBIG, TXM_NO_SPACE). */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    txm_app_options o;
    txm_app_options_init(&o, CUSTOMERS_SOURCE, CUSTOMERS_PORT);
    txm_app *app = NULL;
    txm_error err = {0};
    txm_status st = txm_app_open(&o, &app, &err);
    customers_svc svc = {.db = txm_app_db(app), .log = txm_app_logger(app)};
    if (st == TXM_OK)
        st = customers_schema(svc.db, &err);
    if (st == TXM_OK)
        st = customers_http_register(app, &svc, &err);
    if (st == TXM_OK)
        st = customers_handlers_register(app, &svc, &err);
    if (st == TXM_OK)
        st = txm_app_run(app, &err);
    if (st != TXM_OK) {
        txm_logger lg;
        txm_logger_init(&lg, CUSTOMERS_SOURCE);
        txm_log_write(&lg, TXM_LOG_ERROR, NULL, "cannot run: %s: %s", txm_status_name(st),
                      err.text);
    }
    txm_app_close(app);
    return st == TXM_OK ? 0 : 1;
}
