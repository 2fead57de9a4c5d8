/* Helpers shared by the example services: reading and validating JSON
 * requests, JSON answers, event messages with the seed's fields, reading
 * event payloads, and units of work re-run on optimistic-lock conflicts. */
#ifndef EXAMPLE_H
#define EXAMPLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "txmsg/app.h"
#include "txmsg/txmsg.h"

/* Largest amount of money in cents: 2^53, the largest integer every JSON
 * parser (including JavaScript's) reads exactly. */
#define EX_CENTS_MAX 9007199254740992LL

/* Time text with microseconds, "2026-11-26T22:44:31.123456Z". */
typedef char ex_time[TXM_TIME_LEN + 1];

/* ---- HTTP requests and answers ---- */

/* The request body parsed as a JSON object. Otherwise answers 400
 * VALIDATION_ERROR (malformed JSON, not an object) and returns NULL.
 * Owns: the result is the caller's (json_decref). */
json_t *ex_body_object(txm_http_request *req);

/* Reads obj[field] as an integer number of cents in min..EX_CENTS_MAX into
 * *out. Rejects a missing field, null, strings, booleans, fractions
 * (100.5), exponents (1e3) and negative numbers: answers 400
 * VALIDATION_ERROR naming the field and returns false. */
bool ex_field_cents(txm_http_request *req, const json_t *obj, const char *field, int64_t min,
                    int64_t *out);

/* Reads obj[field] as a UUID string into out, lower-cased. Otherwise
 * answers 400 VALIDATION_ERROR and returns false. */
bool ex_field_uuid(txm_http_request *req, const json_t *obj, const char *field,
                   char out[TXM_UUID_LEN + 1]);

/* Reads the path parameter param as a UUID into out, lower-cased.
 * Otherwise answers 400 VALIDATION_ERROR and returns false. */
bool ex_path_uuid(txm_http_request *req, const char *param, char out[TXM_UUID_LEN + 1]);

/* Answers status with body as JSON; a NULL body (out of memory while
 * building it) answers 500 SYSTEM_ERROR. Owns: takes body. */
void ex_reply_json(txm_http_request *req, int status, json_t *body);

/* Logs what failed with err's text and the request's correlation id, and
 * answers 503 {"error":"SERVICE_UNAVAILABLE"} when the database is away or
 * too busy (TXM_UNAVAILABLE, TXM_BUSY, TXM_TIMEOUT), 503
 * {"error":"STORAGE_FULL"} when its disk is full (TXM_NO_SPACE), else 500
 * {"error":"SYSTEM_ERROR"}. Borrows everything. */
void ex_reply_system_error(txm_http_request *req, const txm_logger *log, const char *what,
                           const txm_error *err);

/* {"self":{"href":"<prefix><id>"}}, plus "cancel" with "<prefix><id>/cancel"
 * when with_cancel. NULL when out of memory. Owns: the caller's. */
json_t *ex_links(const char *prefix, const char *id, bool with_cancel);

/* ---- events ---- */

/* Creates an event message: a new UUID v7 id, source, topic, aggregate_id
 * (the subject and partition key) and correlation_id, with data plus the
 * seed's common fields event_id (= the message id), correlation_id and
 * created_at (= the message's time). Returns TXM_NOMEM, or the statuses of
 * txm_msg_new_with. Owns: takes data on every path; *out is the caller's
 * (normally handed to txm_outbox_publish), NULL on failure. */
txm_status ex_event_new(const char *source, const char *topic, const char *aggregate_id,
                        const char *correlation_id, json_t *data, txm_msg **out, txm_error *err);

/* The payload of msg as a JSON object; TXM_MALFORMED otherwise. Owns: *out
 * is the caller's (json_decref), NULL on failure. */
txm_status ex_msg_object(const txm_msg *msg, json_t **out, txm_error *err);

/* Reads a UUID field of an event payload into out, lower-cased;
 * TXM_MALFORMED naming the field otherwise. */
txm_status ex_msg_uuid(const json_t *obj, const char *field, char out[TXM_UUID_LEN + 1],
                       txm_error *err);

/* Reads an integer field of 0..EX_CENTS_MAX cents; TXM_MALFORMED otherwise. */
txm_status ex_msg_cents(const json_t *obj, const char *field, int64_t *out, txm_error *err);

/* ---- database ---- */

/* The current time as text. */
void ex_now(ex_time out);

/* Copies a time column (NULL or "" gives "") into out. */
void ex_copy_time(const char *text, ex_time out);

/* Runs one statement in uow when it is not NULL, else on db (autocommit).
 * Same contract as txm_uow_exec. */
txm_status ex_exec(txm_db *db, txm_uow *uow, const char *sql, const txm_value *params,
                   size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err);

/* Runs statements (NULL-terminated) in one transaction on db, serialised
 * with other processes doing the same; stops at the first failure and
 * rolls back. For idempotent schema creation, which several instances of a
 * service may run at once. */
txm_status ex_exec_all(txm_db *db, const char *const *statements, txm_error *err);

/* A unit of work body: TXM_OK commits, any other status rolls back. */
typedef txm_status (*ex_unit_fn)(void *ctx, txm_uow *uow, txm_error *err);

/* Runs fn in a new unit of work on db and commits it. On TXM_CONFLICT (an
 * optimistic-lock conflict) runs the whole unit again, up to 8 times, as
 * the consumer runtime does for message handlers. Returns the last status. */
txm_status ex_run_unit(txm_db *db, ex_unit_fn fn, void *ctx, txm_error *err);

/* The command line of the program "<service>-service", which takes its
 * configuration from the environment: --help prints usage (about, then the
 * variables) and --version the version. Returns -1 to run, else the exit
 * status (0 after --help or --version, 2 for anything else). */
int ex_command_line(int argc, char **argv, const char *service, const char *about, int port);

#endif
