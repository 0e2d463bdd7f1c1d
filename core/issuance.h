/*
 * issuance.h: POST /v1/issuances, the uniform issuance endpoint (DESIGN §3 steps 3-15, §4, §8).
 *
 * One struct issuance_service per daemon holds what every issuance reads: the config's
 * issuance section, the card CA, the document key, the subject key, the linkage table, the
 * gate, the audit store and the plugin host.  Each request is one struct issuance that owns
 * all of its state (body copy, record, document, answer) and frees it in one place once its
 * last asynchronous step (thread-pool work, plugin fetch, audit commit, timer close) is back:
 * nothing of one issuance is reachable from another (incidents I1, I2).
 *
 * Threads: the service and every issuance belong to the loop thread.  The card proof and the
 * rendering run on libuv's thread pool over data the issuance hands them and takes back; the
 * audit has its own writer thread (audit.h).
 */
#ifndef MDG_ISSUANCE_H
#define MDG_ISSUANCE_H

#include <stddef.h>

#include <uv.h>

#include "config.h"
#include "conn.h"
#include "gate.h"
#include "killswitch.h"
#include "http.h"
#include "linkage.h"
#include "plugin_host.h"

struct issuance_service;

/*
 * Opens what the issuance section names (card CA, document key, subject key, linkage table
 * and audit store under cfg->data_dir) and checks that every routed plugin instance serves its
 * type.  Returns 0 with *out, or -1 with msg filled for an operator.  Loop thread, at start.
 */
int issuance_service_open(uv_loop_t *loop, struct config *cfg, struct plugin_host *plugins,
			  struct issuance_service **out, char *msg, size_t msg_size);

/*
 * At the end of a drain: abandons what is still waiting for a plugin, lets the audit writer
 * commit what it was given, and closes the store.  Loop thread, inside uv_run().
 */
void issuance_service_shutdown(struct issuance_service *svc);
/* After uv_run() returned: frees everything. */
void issuance_service_free(struct issuance_service *svc);

/* The route handler of POST /v1/issuances (store listener). */
void issuance_handle(struct issuance_service *svc, struct conn *c, const struct http_request *req,
		     struct http_response *resp);

/* GET /v1/keys: the document-signing public keys (store and admin listeners). */
void issuance_keys(struct issuance_service *svc, struct http_response *resp);

/* POST /v1/linkage (admin): a CSV import, answered once stored and applied. */
void issuance_linkage_import(struct issuance_service *svc, struct conn *c,
			     const struct http_request *req, struct http_response *resp);

/*
 * GET /v1/audit (verify false: rows after ?after=SEQ, at most ?limit=N (100, up to 1000), with
 * next_after) and GET /v1/audit/verify (the chain and checkpoints checked against the document
 * key): read from the file on the pool (admin listener).
 */
void issuance_audit(struct issuance_service *svc, bool verify, struct conn *c,
		    const struct http_request *req, struct http_response *resp);

/* The gate, for the admin API and status. */
struct gate *issuance_gate(struct issuance_service *svc);
/* The kill switch (NULL without an issuance section). */
struct killswitch *issuance_killswitch(struct issuance_service *svc);
/* Cards in the linkage table. */
size_t issuance_linkage_count(const struct issuance_service *svc);

#endif
