/*
 * example.c: a complete madoguchi backend plugin, small enough to read in one sitting.
 *
 * It serves `residence` records from a CSV file named in its config and answers after a
 * configurable latency, as a networked backend would: fetch() arms a timer and returns; the
 * timer completes the ticket; cancel() stops the timer.  It shows every part a vendor needs:
 * the descriptor, config values (with their errors reported at the right line), the record
 * builder, asynchronous completion, cancellation, a metric, health and clean shutdown.
 *
 * Config (under plugins.NAME.config in madoguchi.yaml):
 *   data: residents.csv     required; lines "resident_code,version,status,name,kana,address"
 *   latency: 20ms           optional; simulated backend round trip (default 10ms)
 *
 * Build stand-alone:
 *   cc -shared -fPIC $(pkg-config --cflags madoguchi-plugin) -o example.so example.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <madoguchi/plugin.h>

#define EXAMPLE_MAX_ROWS 1024
#define EXAMPLE_FIELDS	 6

struct example_row {
	char *fields[EXAMPLE_FIELDS]; /* resident_code, version, status, name, kana, address */
};

struct example {
	const mdg_host *host;
	mdg_plugin_ctx *ctx;
	uint64_t latency_ms;
	struct example_row rows[EXAMPLE_MAX_ROWS];
	size_t row_count;
	mdg_counter *not_found;
	struct example_pending *pending; /* fetches waiting for their timer */
};

/* One fetch in flight: what the timer needs to complete it. */
struct example_pending {
	struct example_pending *next;
	struct example *ex;
	mdg_ticket ticket;
	mdg_timer *timer;
	const struct example_row *row; /* NULL: no such resident */
};

/* Splits one CSV line (no quoting) into the row; returns 0 or -1. */
static int example_parse_line(char *line, struct example_row *row)
{
	line[strcspn(line, "\r\n")] = '\0';
	char *save = NULL;
	char *tok = strtok_r(line, ",", &save);
	for (int i = 0; i < EXAMPLE_FIELDS; i++) {
		if (tok == NULL)
			return -1;
		row->fields[i] = strdup(tok);
		if (row->fields[i] == NULL)
			return -1;
		tok = strtok_r(NULL, ",", &save);
	}
	return 0;
}

static void example_fini(void *instance)
{
	struct example *ex = instance;
	/* The host cancels every ticket before fini; stop timers still armed. */
	while (ex->pending != NULL) {
		struct example_pending *p = ex->pending;
		ex->pending = p->next;
		ex->host->timer_stop(p->timer);
		free(p);
	}
	for (size_t i = 0; i < ex->row_count; i++) {
		for (int f = 0; f < EXAMPLE_FIELDS; f++)
			free(ex->rows[i].fields[f]);
	}
	free(ex);
}

static int example_init(const mdg_host *host, mdg_plugin_ctx *ctx, void **instance)
{
	struct example *ex = calloc(1, sizeof *ex);
	if (ex == NULL)
		return MDG_ERR_NO_MEMORY;
	ex->host = host;
	ex->ctx = ctx;
	const char *data = NULL;
	if (host->config_path(ctx, "data", 1, NULL, &data) != MDG_OK ||
	    host->config_duration_ms(ctx, "latency", 0, 10, &ex->latency_ms) == MDG_ERR_INVALID) {
		free(ex);
		return MDG_ERR_INVALID;
	}
	FILE *fp = fopen(data, "r");
	if (fp == NULL) {
		free(ex);
		return host->config_error(ctx, "data", "cannot open the file");
	}
	char line[1024];
	while (fgets(line, sizeof line, fp) != NULL && ex->row_count < EXAMPLE_MAX_ROWS) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (example_parse_line(line, &ex->rows[ex->row_count]) != 0) {
			ex->row_count++; /* so fini frees what the line got */
			fclose(fp);
			example_fini(ex);
			return host->config_error(ctx, "data", "a line does not have 6 fields");
		}
		ex->row_count++;
	}
	fclose(fp);
	ex->not_found =
	    host->counter(ctx, "example_not_found", "Fetches for unknown residents.", "");
	host->log(ctx, MDG_LOG_INFO, "example_ready", "residents loaded");
	*instance = ex;
	return MDG_OK;
}

/* Removes p from the pending list. */
static void example_unlink(struct example *ex, struct example_pending *p)
{
	for (struct example_pending **pp = &ex->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static void example_answer(void *arg)
{
	struct example_pending *p = arg;
	struct example *ex = p->ex;
	const mdg_host *h = ex->host;
	example_unlink(ex, p);
	if (p->row == NULL) {
		h->counter_add(ex->not_found, 1);
		h->complete(ex->ctx, p->ticket, MDG_ERR_NOT_FOUND, NULL, "no such resident");
		free(p);
		return;
	}
	char *const *f = p->row->fields;
	mdg_record *r = h->record_new(ex->ctx, "residence", f[0], strtoull(f[1], NULL, 10), f[2],
				      (int64_t)time(NULL));
	h->record_set(r, "name", f[3]);
	h->record_set(r, "name_kana", f[4]);
	h->record_set(r, "address", f[5]);
	/* complete() takes the record, whatever happens to the ticket. */
	h->complete(ex->ctx, p->ticket, MDG_OK, r, NULL);
	free(p);
}

static int example_fetch(void *instance, const struct mdg_fetch *fetch)
{
	struct example *ex = instance;
	struct example_pending *p = calloc(1, sizeof *p);
	if (p == NULL)
		return MDG_ERR_NO_MEMORY;
	p->ex = ex;
	p->ticket = fetch->ticket;
	for (size_t i = 0; i < ex->row_count; i++) {
		if (strcmp(ex->rows[i].fields[0], fetch->resident_code) == 0)
			p->row = &ex->rows[i];
	}
	p->timer = ex->host->timer_start(ex->ctx, ex->latency_ms, example_answer, p);
	if (p->timer == NULL) {
		free(p);
		return MDG_ERR_NO_MEMORY;
	}
	p->next = ex->pending;
	ex->pending = p;
	return MDG_OK;
}

static void example_cancel(void *instance, mdg_ticket ticket)
{
	struct example *ex = instance;
	for (struct example_pending *p = ex->pending; p != NULL; p = p->next) {
		if (memcmp(p->ticket.bytes, ticket.bytes, sizeof ticket.bytes) == 0) {
			example_unlink(ex, p);
			ex->host->timer_stop(p->timer);
			free(p);
			return;
		}
	}
}

static int example_health(void *instance, char *detail, size_t size)
{
	struct example *ex = instance;
	snprintf(detail, size, "%zu residents loaded", ex->row_count);
	return ex->row_count > 0 ? MDG_OK : MDG_ERR_UNAVAILABLE;
}

static const char *const example_certificates[] = {"residence", NULL};

static const struct mdg_plugin_descriptor example_descriptor = {
    .abi_major = MDG_PLUGIN_ABI_MAJOR,
    .abi_minor = MDG_PLUGIN_ABI_MINOR,
    .size = sizeof(struct mdg_plugin_descriptor),
    .flags = 0,
    .name = "example",
    .version = "1.0.0",
    .vendor = "madoguchi project",
    .certificates = example_certificates,
    .init = example_init,
    .fini = example_fini,
    .fetch = example_fetch,
    .cancel = example_cancel,
    .health = example_health,
};

const struct mdg_plugin_descriptor *mdg_plugin_entry(void)
{
	return &example_descriptor;
}
