/*
 * sqlite_registry.c: the "sqlite-registry" plugin, a municipality's own registry in a local
 * SQLite file (plugins/sqlite-registry/README.md), served for all seven certificate types.
 *
 * The plugin is MDG_PLUGIN_BLOCKING: the host calls fetch() on libuv's worker threads, several
 * at once, and fetch() completes its ticket before it returns.  A SQLite connection is used by
 * one thread at a time, so the instance keeps a small pool of read-only connections
 * (plugins/common/registry.c) behind a mutex: a fetch takes one (opening a new one while
 * fewer than SQLREG_POOL_MAX exist, else waiting for one), reads, and gives it back.  Nothing
 * of a request is kept in the instance: the ticket, the codes and the record live on the
 * fetch's stack (incidents I1, I2).
 *
 * init() and fini() run on the loop thread: init opens one connection to check the file and
 * read its municipality; fini waits for fetches still running on workers, then closes every
 * connection.  health() only reads an atomic flag set by the last fetch, so it never blocks.
 *
 * Config (plugins.NAME.config):
 *   database: registry.sqlite   required; the registry file (opened read-only)
 *   municipality: "141003"      optional; the code served (default: the file's meta)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <madoguchi/plugin.h>

#include "registry.h"

#define SQLREG_POOL_MAX 8
#define SQLREG_ERR_MAX	256

struct sqlreg {
	const mdg_host *host;
	mdg_plugin_ctx *ctx;
	char *path;
	char municipality[16];
	mdg_counter *backend_errors;
	atomic_int healthy; /* 1 while the last read (or the opening) succeeded */

	pthread_mutex_t lock;
	pthread_cond_t changed; /* a connection came back, or a fetch ended */
	struct registry *idle[SQLREG_POOL_MAX];
	size_t idle_count;
	size_t open_count; /* connections in existence: idle + in use + being opened */
	size_t running;	   /* fetches inside fetch() */
};

/* Takes an idle connection, or opens one, or waits for one.  Returns NULL with err filled
 * when a new one does not open. */
static struct registry *sqlreg_take(struct sqlreg *s, char *err, size_t err_size)
{
	pthread_mutex_lock(&s->lock);
	while (s->idle_count == 0 && s->open_count >= SQLREG_POOL_MAX)
		pthread_cond_wait(&s->changed, &s->lock);
	if (s->idle_count > 0) {
		struct registry *reg = s->idle[--s->idle_count];
		pthread_mutex_unlock(&s->lock);
		return reg;
	}
	s->open_count++;
	pthread_mutex_unlock(&s->lock);
	struct registry *reg = NULL;
	if (registry_open(s->path, &reg, err, err_size) != REG_OK) {
		pthread_mutex_lock(&s->lock);
		s->open_count--;
		pthread_cond_broadcast(&s->changed);
		pthread_mutex_unlock(&s->lock);
		return NULL;
	}
	return reg;
}

/* Gives a connection back to the pool. */
static void sqlreg_give(struct sqlreg *s, struct registry *reg)
{
	pthread_mutex_lock(&s->lock);
	s->idle[s->idle_count++] = reg;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
}

static void sqlreg_fini(void *instance)
{
	struct sqlreg *s = instance;
	pthread_mutex_lock(&s->lock);
	/* A fetch the host gave up on may still run on a worker: let it finish first. */
	while (s->running > 0)
		pthread_cond_wait(&s->changed, &s->lock);
	for (size_t i = 0; i < s->idle_count; i++)
		registry_close(s->idle[i]);
	s->idle_count = 0;
	pthread_mutex_unlock(&s->lock);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

static int sqlreg_init(const mdg_host *host, mdg_plugin_ctx *ctx, void **instance)
{
	const char *path = NULL, *municipality = NULL;
	if (host->config_path(ctx, "database", 1, NULL, &path) != MDG_OK)
		return MDG_ERR_INVALID;
	if (host->config_string(ctx, "municipality", 0, NULL, &municipality) == MDG_ERR_INVALID)
		return MDG_ERR_INVALID;
	if (municipality != NULL &&
	    (strlen(municipality) != 6 || strspn(municipality, "0123456789") != 6))
		return host->config_error(ctx, "municipality",
					  "expected a six-digit municipality code");

	char err[SQLREG_ERR_MAX];
	struct registry *reg = NULL;
	if (registry_open(path, &reg, err, sizeof err) != REG_OK) {
		char msg[SQLREG_ERR_MAX + 64];
		snprintf(msg, sizeof msg, "%s (check the path and that it is a registry file)",
			 err);
		return host->config_error(ctx, "database", msg);
	}
	struct sqlreg *s = calloc(1, sizeof *s);
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		registry_close(reg);
		return MDG_ERR_NO_MEMORY;
	}
	s->host = host;
	s->ctx = ctx;
	snprintf(s->municipality, sizeof s->municipality, "%s",
		 municipality ? municipality : registry_municipality(reg));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	s->idle[s->idle_count++] = reg;
	s->open_count = 1;
	atomic_store(&s->healthy, 1);
	s->backend_errors = host->counter(ctx, "sqlite_registry_backend_errors",
					  "Fetches that failed because the registry file could "
					  "not be read.",
					  "");
	*instance = s;
	return MDG_OK;
}

/* Builds the host's record from a registry record; NULL when a set failed. */
static mdg_record *sqlreg_convert(struct sqlreg *s, const struct reg_record *rec)
{
	const mdg_host *h = s->host;
	mdg_record *r = h->record_new(s->ctx, rec->certificate, rec->resident_code, rec->version,
				      rec->status, rec->as_of);
	if (r == NULL)
		return NULL;
	int ok = 1;
	for (size_t i = 0; i < rec->field_count; i++)
		ok &= h->record_set(r, rec->fields[i].name, rec->fields[i].value) == MDG_OK;
	for (size_t l = 0; l < rec->list_count; l++) {
		const struct reg_list *list = &rec->lists[l];
		for (size_t i = 0; i < list->item_count; i++) {
			mdg_item *item = h->record_add_item(r, list->name);
			ok &= item != NULL;
			for (size_t f = 0; item != NULL && f < list->items[i].field_count; f++)
				ok &= h->item_set(item, list->items[i].fields[f].name,
						  list->items[i].fields[f].value) == MDG_OK;
		}
	}
	if (!ok) {
		h->record_free(r);
		return NULL;
	}
	return r;
}

/* Reads and completes one fetch (on a worker thread). */
static void sqlreg_serve(struct sqlreg *s, const struct mdg_fetch *f)
{
	const mdg_host *h = s->host;
	if (f->municipality == NULL || strcmp(f->municipality, s->municipality) != 0) {
		h->complete(s->ctx, f->ticket, MDG_ERR_NOT_FOUND, NULL,
			    "the municipality is not the one this registry holds");
		return;
	}
	char err[SQLREG_ERR_MAX] = "";
	struct registry *reg = sqlreg_take(s, err, sizeof err);
	if (reg == NULL) {
		atomic_store(&s->healthy, 0);
		h->counter_add(s->backend_errors, 1);
		h->complete(s->ctx, f->ticket, MDG_ERR_BACKEND, NULL, err);
		return;
	}
	struct reg_record *rec = NULL;
	int rc =
	    registry_fetch(reg, f->certificate, f->resident_code,
			   f->options & (REG_HOUSEHOLD | REG_SHOW_MY_NUMBER | REG_SHOW_DOMICILE),
			   REG_CURRENT, &rec, err, sizeof err);
	sqlreg_give(s, reg);
	if (rc == REG_NOT_FOUND) {
		atomic_store(&s->healthy, 1);
		h->complete(s->ctx, f->ticket, MDG_ERR_NOT_FOUND, NULL,
			    "no such resident, or no data of this certificate type");
		return;
	}
	if (rc != REG_OK) {
		atomic_store(&s->healthy, 0);
		h->counter_add(s->backend_errors, 1);
		h->complete(s->ctx, f->ticket, MDG_ERR_BACKEND, NULL, err);
		return;
	}
	atomic_store(&s->healthy, 1);
	mdg_record *r = sqlreg_convert(s, rec);
	reg_record_free(rec);
	if (r == NULL) {
		h->counter_add(s->backend_errors, 1);
		h->complete(s->ctx, f->ticket, MDG_ERR_BACKEND, NULL,
			    "the record could not be built (out of memory or a bad field)");
		return;
	}
	h->complete(s->ctx, f->ticket, MDG_OK, r, NULL);
}

static int sqlreg_fetch(void *instance, const struct mdg_fetch *f)
{
	struct sqlreg *s = instance;
	pthread_mutex_lock(&s->lock);
	s->running++;
	pthread_mutex_unlock(&s->lock);
	sqlreg_serve(s, f);
	pthread_mutex_lock(&s->lock);
	s->running--;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	return MDG_OK;
}

static int sqlreg_health(void *instance, char *detail, size_t detail_size)
{
	struct sqlreg *s = instance;
	if (atomic_load(&s->healthy)) {
		snprintf(detail, detail_size, "registry file open");
		return MDG_OK;
	}
	snprintf(detail, detail_size, "the last read of the registry file failed");
	return MDG_ERR_UNAVAILABLE;
}

static const char *const sqlreg_certificates[] = {
    "residence",	 "residence-record",  "seal", "tax-income", "koseki-full",
    "koseki-individual", "koseki-attachment", NULL,
};

static const struct mdg_plugin_descriptor sqlreg_descriptor = {
    .abi_major = MDG_PLUGIN_ABI_MAJOR,
    .abi_minor = MDG_PLUGIN_ABI_MINOR,
    .size = sizeof(struct mdg_plugin_descriptor),
    .flags = MDG_PLUGIN_BLOCKING,
    .name = "sqlite-registry",
    .version = "1.0.0",
    .vendor = "madoguchi project",
    .certificates = sqlreg_certificates,
    .init = sqlreg_init,
    .fini = sqlreg_fini,
    .fetch = sqlreg_fetch,
    .cancel = NULL,
    .health = sqlreg_health,
};

const struct mdg_plugin_descriptor *mdg_plugin_entry(void)
{
	return &sqlreg_descriptor;
}
