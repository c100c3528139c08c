/*
 * policy: see policy.h.
 */
#include "dom/policy.h"

#include <string.h>

bool policy_in(const char *allowed, const char *action)
{
	size_t n = action ? strlen(action) : 0;
	const char *p = allowed;

	if (!p || !n)
		return false;
	while (*p) {
		size_t len;

		while (*p == ' ')
			p++;
		len = strcspn(p, " ");
		if (len == n && !memcmp(p, action, n))
			return true;
		p += len;
	}
	return false;
}
