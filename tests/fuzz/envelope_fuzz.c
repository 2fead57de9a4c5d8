/* libFuzzer harness for txm_msg_decode: any input must decode or fail cleanly,
 * and whatever decodes must survive an encode/decode round trip unchanged.
 * Built by tests/fuzz/CMakeLists.txt: a libFuzzer binary under make fuzz,
 * envelope_fuzz_replay (corpus and tests/data/envelope cases) in make test. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "txmsg/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static int same_data(const txm_msg *a, const txm_msg *b)
{
    size_t alen = 0, blen = 0;
    const char *adata = txm_msg_data(a, &alen), *bdata = txm_msg_data(b, &blen);
    return alen == blen && memcmp(adata, bdata, alen) == 0;
}

static int same_extensions(const txm_msg *a, const txm_msg *b)
{
    if (txm_msg_extension_count(a) != txm_msg_extension_count(b))
        return 0;
    for (size_t i = 0; i < txm_msg_extension_count(a); i++) {
        const char *aname = NULL, *bname = NULL;
        if (!same(txm_msg_extension_at(a, i, &aname), txm_msg_extension_at(b, i, &bname)) ||
            !same(aname, bname))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    txm_msg *m = NULL;
    txm_error err = {0};
    txm_status st = txm_msg_decode((const char *)data, size, &m, &err);
    if (st != TXM_OK) {
        if (m != NULL || err.status != st || err.text[0] == '\0')
            abort();
        return 0;
    }
    char *doc = NULL;
    size_t len = 0;
    txm_msg *back = NULL;
    if (txm_msg_encode(m, &doc, &len, NULL) != TXM_OK ||
        txm_msg_decode(doc, len, &back, NULL) != TXM_OK)
        abort();
    if (!same(txm_msg_id(m), txm_msg_id(back)) || !same(txm_msg_source(m), txm_msg_source(back)) ||
        !same(txm_msg_topic(m), txm_msg_topic(back)) ||
        !same(txm_msg_aggregate_id(m), txm_msg_aggregate_id(back)) ||
        !same(txm_msg_correlation_id(m), txm_msg_correlation_id(back)) ||
        !same(txm_msg_payload(m), txm_msg_payload(back)) ||
        txm_msg_created_at_us(m) != txm_msg_created_at_us(back) ||
        txm_msg_has_time(m) != txm_msg_has_time(back) ||
        txm_msg_data_kind(m) != txm_msg_data_kind(back) ||
        !same(txm_msg_content_type(m), txm_msg_content_type(back)) || !same_data(m, back) ||
        !same_extensions(m, back))
        abort();
    txm_msg_free(back);
    txm_free(doc);
    txm_msg_free(m);
    return 0;
}
