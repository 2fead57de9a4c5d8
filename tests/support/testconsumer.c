/* Consumer options shared by the tests that run consumers. */
#include "testconsumer.h"

void txm_test_consumer_options(txm_consumer_options *co, txm_handler_options *ho)
{
    txm_consumer_options_init(co);
    co->backoff_base_ms = 50;
    co->backoff_max_ms = 200;
    txm_handler_options_init(ho);
    ho->wait_ms = 100;
}
