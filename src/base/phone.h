/*
 * phone: subscriber numbers normalised to E.164 ("+254712345678") so one
 * person is one key whichever way an aggregator or a member wrote it:
 * "0712345678", "712345678", "254712345678", "+254712345678",
 * "00254712345678" (with spaces or dashes) all become the same.
 */
#ifndef CHAMAD_PHONE_H
#define CHAMAD_PHONE_H

#include <stddef.h>

/* Normalises `in` using country_code (digits, e.g. "254") for national
 * numbers.  Writes "+<digits>" into out (at least 17 bytes).  Returns 0, or
 * -1 when in is not a plausible number (8 to 15 digits after the country
 * code is applied). */
int phone_normalise(const char *in, const char *country_code, char *out, size_t outlen);

#endif
