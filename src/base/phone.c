/*
 * phone: E.164 normalisation.
 */
#include "base/phone.h"

#include <stdio.h>
#include <string.h>

int phone_normalise(const char *in, const char *country_code, char *out, size_t outlen)
{
	char d[24];
	size_t n = 0, cc = strlen(country_code);
	int plus = 0;

	for (const char *p = in; *p; p++) {
		if (*p >= '0' && *p <= '9') {
			if (n + 1 >= sizeof(d))
				return -1;
			d[n++] = *p;
		} else if (*p == '+' && n == 0 && !plus) {
			plus = 1;
		} else if (!strchr(" -().", *p)) {
			return -1;
		}
	}
	d[n] = '\0';
	if (!plus && n > 2 && d[0] == '0' && d[1] == '0') {	/* 00 international prefix */
		memmove(d, d + 2, n - 1);
		n -= 2;
		plus = 1;
	}
	if (!plus) {
		if (n > cc && !strncmp(d, country_code, cc) && n - cc >= 8) {
			/* already carries the country code: 254712345678 */
		} else if (n >= 2 && d[0] == '0') {	/* national: 0712345678 */
			if (n - 1 + cc + 1 > sizeof(d))
				return -1;
			memmove(d + cc, d + 1, n);	/* includes the NUL */
			memcpy(d, country_code, cc);
			n = n - 1 + cc;
		} else if (n >= 7 && n <= 10) {	/* national without the 0: 712345678 */
			if (n + cc + 1 > sizeof(d))
				return -1;
			memmove(d + cc, d, n + 1);
			memcpy(d, country_code, cc);
			n += cc;
		}
	}
	if (n < 8 || n > 15 || d[0] == '0')
		return -1;
	if ((size_t)snprintf(out, outlen, "+%s", d) >= outlen)
		return -1;
	return 0;
}
