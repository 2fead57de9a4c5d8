/* Exponential backoff: doubles per failed attempt, capped. */
#include "consumer/backoff.h"

int txm__backoff_ms(int base_ms, int max_ms, int attempt)
{
    if (base_ms <= 0 || max_ms <= 0)
        return 0;
    long long d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    return d > max_ms ? max_ms : (int)d;
}
