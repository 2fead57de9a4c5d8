/* The envelope helpers other modules use: the claim-check reference that
 * decoding refuses, and CloudEvents binary mode turned into a document. */
#ifndef TXM_CORE_ENVELOPE_H
#define TXM_CORE_ENVELOPE_H

/* "dataref" of a claim-check document (transport/claim_check.c). */
#define TXM__DATAREF_PREFIX "txmsg-blob:"

#endif
