/*
 * gate.c: suspensions held in memory and the gate's check (contract in gate.h).
 *
 * The set is small (a handful of plugin instances), so a linked list searched per check is
 * both the simplest and the fastest structure; the loop thread owns it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"

struct gate_suspension {
	struct gate_suspension *next;
	enum gate_source source;
	char plugin[64];
	char reason[GATE_REASON_MAX];
	time_t since;
	bool immediate;
};

struct gate {
	struct gate_suspension *list;
};

struct gate *gate_new(void)
{
	return calloc(1, sizeof(struct gate));
}

void gate_free(struct gate *gate)
{
	if (gate == NULL)
		return;
	while (gate->list != NULL) {
		struct gate_suspension *s = gate->list;
		gate->list = s->next;
		free(s);
	}
	free(gate);
}

bool gate_check(const struct gate *gate, const char *plugin, const char *version,
		const char *certificate, const char *municipality, bool in_flight,
		struct gate_verdict *out)
{
	const struct gate_suspension *best = NULL;
	(void)version;	    /* version ranges come with the ministry's lists */
	(void)certificate;  /* so do per-type scopes: an auto suspension covers every type */
	(void)municipality; /* and municipality scopes */
	for (const struct gate_suspension *s = gate->list; s != NULL; s = s->next) {
		if (strcmp(s->plugin, plugin) != 0 || (in_flight && !s->immediate))
			continue;
		if (best == NULL || s->source < best->source)
			best = s;
	}
	if (best == NULL)
		return false;
	if (out != NULL) {
		out->source = best->source;
		snprintf(out->reason, sizeof out->reason, "%s", best->reason);
		out->since = best->since;
		out->immediate = best->immediate;
	}
	return true;
}

int gate_suspend_auto(struct gate *gate, const char *plugin, const char *reason, time_t now)
{
	for (struct gate_suspension *s = gate->list; s != NULL; s = s->next)
		if (s->source == GATE_AUTO && strcmp(s->plugin, plugin) == 0)
			return 0; /* already suspended: keep the first fault's time and reason */
	struct gate_suspension *s = calloc(1, sizeof *s);
	if (s == NULL)
		return -1;
	s->source = GATE_AUTO;
	snprintf(s->plugin, sizeof s->plugin, "%s", plugin);
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	s->since = now;
	s->immediate = true;
	s->next = gate->list;
	gate->list = s;
	return 0;
}

bool gate_acknowledge_auto(struct gate *gate, const char *plugin)
{
	for (struct gate_suspension **p = &gate->list; *p != NULL; p = &(*p)->next) {
		struct gate_suspension *s = *p;
		if (s->source == GATE_AUTO && strcmp(s->plugin, plugin) == 0) {
			*p = s->next;
			free(s);
			return true;
		}
	}
	return false;
}

const char *gate_source_name(enum gate_source source)
{
	static const char *const names[] = {"ministry", "auto", "local"};
	return source <= GATE_LOCAL ? names[source] : "unknown";
}
