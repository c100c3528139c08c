/*
 * auth: argon2id PIN hashes on the workpool; keyed digests on the loop.
 */
#include "dom/auth.h"
#include "base/config.h"
#include "base/util.h"
#include "base/workpool.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct auth {
	struct workpool *pool;
	unsigned char key[crypto_generichash_KEYBYTES];	/* from the pepper */
	unsigned long long opslimit;
	size_t memlimit;
};

/* One hash or check, handed to a worker.  Owned by the job until done. */
struct pin_job {
	struct auth *a;
	char prehash[2 * crypto_generichash_BYTES + 1];
	char *stored;		/* verify only */
	unsigned long long opslimit;
	size_t memlimit;
	enum auth_status st;
	char *hash;
	auth_hash_cb cb;
	void *arg;
};

static void derive_key(const char *pepper, unsigned char key[crypto_generichash_KEYBYTES])
{
	crypto_generichash(key, crypto_generichash_KEYBYTES, (const unsigned char *)"chamad-pin-pepper:", 18, NULL,
			   0);
	crypto_generichash(key, crypto_generichash_KEYBYTES, (const unsigned char *)pepper, strlen(pepper), key,
			   crypto_generichash_KEYBYTES);
}

static void prehash(const unsigned char *key, const char *pin, char out[2 * crypto_generichash_BYTES + 1])
{
	unsigned char h[crypto_generichash_BYTES];

	crypto_generichash(h, sizeof(h), (const unsigned char *)pin, strlen(pin), key, crypto_generichash_KEYBYTES);
	sodium_bin2hex(out, 2 * crypto_generichash_BYTES + 1, h, sizeof(h));
}

static char *hash_with(const char *pre, unsigned long long ops, size_t mem)
{
	char out[crypto_pwhash_STRBYTES];

	if (crypto_pwhash_str_alg(out, pre, strlen(pre), ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return NULL;
	return xstrdup(out);
}

void auth_set_config(struct auth *a, const struct config *cfg)
{
	a->opslimit = (unsigned long long)cfg->auth_pin_opslimit;
	a->memlimit = (size_t)cfg->auth_pin_memlimit_kib * 1024;
	if (a->pool)
		workpool_set_budget(a->pool, cfg->http_request_timeout_ms);
}

struct auth *auth_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	struct auth *a = xcalloc(1, sizeof(*a));

	a->pool = workpool_new(base, cfg->auth_workers, cfg->auth_queue_max, cfg->http_request_timeout_ms, err,
			       errlen);
	if (!a->pool) {
		free(a);
		return NULL;
	}
	derive_key(cfg->auth_pin_pepper, a->key);
	auth_set_config(a, cfg);
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	workpool_free(a->pool);
	sodium_memzero(a->key, sizeof(a->key));
	free(a);
}

void auth_stats(struct auth *a, struct workpool_stats *out)
{
	workpool_stats(a->pool, out);
}

/* ---- on a worker ---- */

static void work_hash(void *arg)
{
	struct pin_job *j = arg;

	j->hash = hash_with(j->prehash, j->opslimit, j->memlimit);
	j->st = j->hash ? AUTH_OK : AUTH_ERROR;
}

static void work_verify(void *arg)
{
	struct pin_job *j = arg;

	if (strncmp(j->stored, "$argon2", 7) != 0) {
		j->st = AUTH_ERROR;
		return;
	}
	if (crypto_pwhash_str_verify(j->stored, j->prehash, strlen(j->prehash)) != 0) {
		j->st = AUTH_MISMATCH;
		return;
	}
	j->st = AUTH_OK;
	if (crypto_pwhash_str_needs_rehash(j->stored, j->opslimit, j->memlimit) != 0)
		j->hash = hash_with(j->prehash, j->opslimit, j->memlimit);
}

/* ---- back on the loop ---- */

static void job_done(void *arg, enum work_status ws)
{
	struct pin_job *j = arg;
	enum auth_status st = ws == WORK_OK ? j->st : ws == WORK_BUSY ? AUTH_BUSY : AUTH_ERROR;
	char *hash = ws == WORK_OK ? j->hash : NULL;

	if (ws != WORK_OK)
		free(j->hash);
	sodium_memzero(j->prehash, sizeof(j->prehash));
	free(j->stored);
	j->cb(j->arg, st, hash);
	free(j);
}

static struct pin_job *job_new(struct auth *a, const char *pin, auth_hash_cb cb, void *arg)
{
	struct pin_job *j = xcalloc(1, sizeof(*j));

	j->a = a;
	prehash(a->key, pin, j->prehash);
	j->opslimit = a->opslimit;
	j->memlimit = a->memlimit;
	j->cb = cb;
	j->arg = arg;
	return j;
}

void auth_pin_hash(struct auth *a, const char *pin, uint64_t deadline_ms, auth_hash_cb cb, void *arg)
{
	workpool_submit(a->pool, work_hash, job_done, job_new(a, pin, cb, arg), deadline_ms);
}

void auth_pin_verify(struct auth *a, const char *pin, const char *stored, uint64_t deadline_ms, auth_hash_cb cb,
		     void *arg)
{
	struct pin_job *j = job_new(a, pin, cb, arg);

	j->stored = xstrdup(stored);
	workpool_submit(a->pool, work_verify, job_done, j, deadline_ms);
}

bool auth_admits(struct auth *a, uint64_t deadline_ms)
{
	return workpool_admits(a->pool, deadline_ms);
}

void auth_digest(const struct auth *a, const char *p1, const char *p2, const char *p3, char out[65])
{
	crypto_generichash_state st;
	unsigned char h[32];
	const char *parts[3] = { p1, p2, p3 };

	crypto_generichash_init(&st, a->key, sizeof(a->key), sizeof(h));
	for (int i = 0; i < 3; i++) {
		if (!parts[i])
			continue;
		crypto_generichash_update(&st, (const unsigned char *)parts[i], strlen(parts[i]));
		crypto_generichash_update(&st, (const unsigned char *)":", 1);
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

bool auth_pin_trivial(const char *pin)
{
	static const char *const favourites[] = { "1122", "1212", "2580", "1004", "2000", "1010", "6969", NULL };
	size_t n = strlen(pin);
	bool same = true, up = true, down = true;

	for (size_t i = 1; i < n; i++) {
		same &= pin[i] == pin[0];
		up &= pin[i] == pin[i - 1] + 1;
		down &= pin[i] == pin[i - 1] - 1;
	}
	if (same || up || down)
		return true;
	for (size_t i = 0; favourites[i]; i++)
		if (!strcmp(pin, favourites[i]))
			return true;
	return false;
}

char *auth_pin_hash_now(const struct config *cfg, const char *pin)
{
	unsigned char key[crypto_generichash_KEYBYTES];
	char pre[2 * crypto_generichash_BYTES + 1];
	char *h;

	derive_key(cfg->auth_pin_pepper, key);
	prehash(key, pin, pre);
	h = hash_with(pre, (unsigned long long)cfg->auth_pin_opslimit, (size_t)cfg->auth_pin_memlimit_kib * 1024);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(pre, sizeof(pre));
	return h;
}
