/*
 * admin.h: the routes of each listener.
 *
 * The store listener serves the store network (issuance endpoints arrive with later modules;
 * a health probe now), the admin listener the municipal IT's API over the Unix socket, the
 * metrics listener Prometheus and the probes.  Handlers run on the loop thread.
 */
#ifndef MDG_ADMIN_H
#define MDG_ADMIN_H

#include <stddef.h>

#include "conn.h"

extern const struct route admin_store_routes[];
extern const size_t admin_store_route_count;
extern const struct route admin_admin_routes[];
extern const size_t admin_admin_route_count;
extern const struct route admin_metrics_routes[];
extern const size_t admin_metrics_route_count;

#endif
