/* Consumer options for tests: quick back-off and short waits, so a test of
 * retries or dead-lettering takes a fraction of a second. */
#ifndef TXM_TEST_TESTCONSUMER_H
#define TXM_TEST_TESTCONSUMER_H

#include "txmsg/txmsg.h"

/* Fills co and ho with the library's defaults, then back-off from 50 to
 * 200 ms and a 100 ms receive wait. */
void txm_test_consumer_options(txm_consumer_options *co, txm_handler_options *ho);

#endif
