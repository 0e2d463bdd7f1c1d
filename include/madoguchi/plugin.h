/*
 * madoguchi/plugin.h: the plugin SDK, the one header a backend plugin includes.
 *
 * A plugin is a shared object that exports one function, mdg_plugin_entry(), returning a
 * static descriptor: who it is, which certificate types it serves, and its callbacks.  The
 * host (madoguchid) reaches the plugin only through those callbacks; the plugin reaches the
 * host only through the mdg_host table it is given at init.  No core struct crosses this
 * boundary, and no JSON library either: records are built with the host's record builder.
 *
 * Build a plugin stand-alone with:
 *     cc -shared -fPIC $(pkg-config --cflags madoguchi-plugin) -o my.so my.c
 * See docs/plugin-sdk.md for a walk-through and plugins/example/ for a complete plugin.
 *
 * ABI RULES
 *   - MDG_PLUGIN_ABI_MAJOR changes when anything is removed or changed: a field, a callback's
 *     signature or meaning.  The host refuses a plugin whose major differs from its own.
 *   - MDG_PLUGIN_ABI_MINOR grows when something is added: only at the END of struct
 *     mdg_host or struct mdg_plugin_descriptor, or as a new constant.  The host refuses a
 *     plugin whose minor is newer than its own (the plugin might call what is not there);
 *     a plugin built against an older minor keeps working.
 *   - Structs carry their own size (host->size, descriptor->size); read a member only when
 *     the size says it is there.  Never reorder, never reuse a reserved slot for another
 *     type.
 *
 * THREADS
 *   Every callback is called on the host's loop thread, except fetch() of a plugin with
 *   MDG_PLUGIN_BLOCKING, which is called on a worker thread.  Host functions may be called
 *   from the loop thread; those marked "any thread" also from workers.  A non-blocking
 *   plugin must never block the loop: use the loop, timers and host->queue_work().
 *
 * PRIVACY
 *   Never pass a name, address, card serial, resident code or My Number to host->log():
 *   log lines are kept by journald and read by people who must not see them (DESIGN §10).
 *
 * CHANGELOG
 *   1.0  first ABI: descriptor, host table (log, config, loop, timers, work, metrics,
 *        record builder, completion, change notification).
 */
#ifndef MADOGUCHI_PLUGIN_H
#define MADOGUCHI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MDG_PLUGIN_ABI_MAJOR 1u
#define MDG_PLUGIN_ABI_MINOR 0u

/* The symbol every plugin exports. */
#define MDG_PLUGIN_ENTRY_SYMBOL "mdg_plugin_entry"

/* Opaque host-side objects. */
typedef struct mdg_plugin_ctx mdg_plugin_ctx; /* one per plugin instance */
typedef struct mdg_record mdg_record;	      /* a record being built */
typedef struct mdg_item mdg_item;	      /* an item of a record's list */
typedef struct mdg_timer mdg_timer;
typedef struct mdg_counter mdg_counter;

/*
 * A ticket names one fetch.  It is unguessable (96 random bits) and used once: the host
 * forgets it when the fetch completes, times out or is cancelled, and drops any completion
 * that names a ticket it no longer knows (a late or foreign result can never reach another
 * request: incident I1).
 */
typedef struct mdg_ticket {
	uint8_t bytes[16];
} mdg_ticket;

/* Status codes of host functions and plugin callbacks. */
enum mdg_status {
	MDG_OK = 0,
	MDG_ERR_INVALID = -1,	/* bad argument or value */
	MDG_ERR_NOT_FOUND = -2, /* no such key, resident, ticket */
	MDG_ERR_NO_MEMORY = -3,
	MDG_ERR_BACKEND = -4,	  /* the backend failed or answered nonsense */
	MDG_ERR_TIMEOUT = -5,	  /* the backend did not answer in time */
	MDG_ERR_UNAVAILABLE = -6, /* not now (overloaded, shutting down) */
};

/* Log levels of host->log(). */
enum mdg_log_level {
	MDG_LOG_DEBUG = 0,
	MDG_LOG_INFO = 1,
	MDG_LOG_WARN = 2,
	MDG_LOG_ERROR = 3,
};

/* Descriptor flags. */
#define MDG_PLUGIN_BLOCKING 0x1u /* fetch() blocks: the host calls it on a worker thread */

/* Request options a fetch may need (e.g. to include household members). */
#define MDG_FETCH_HOUSEHOLD	 0x1u
#define MDG_FETCH_SHOW_MY_NUMBER 0x2u
#define MDG_FETCH_SHOW_DOMICILE	 0x4u

/* One fetch: what the host asks a plugin instance for.  Valid only during fetch(). */
struct mdg_fetch {
	size_t size;		   /* sizeof(struct mdg_fetch) of the host */
	mdg_ticket ticket;	   /* pass to host->complete() */
	const char *certificate;   /* "residence", "seal", … (DESIGN §4) */
	const char *municipality;  /* six-digit code */
	const char *resident_code; /* from the appliance's linkage table */
	uint32_t options;	   /* MDG_FETCH_* */
	uint64_t deadline_ms;	   /* host->now_ms() value by which to complete */
};

/*
 * Services of the host.  Append-only: add new members at the end only, and bump
 * MDG_PLUGIN_ABI_MINOR (see ABI RULES).
 */
typedef struct mdg_host {
	uint32_t abi_major;
	uint32_t abi_minor;
	size_t size; /* sizeof(struct mdg_host) of the host */

	/* --- logging (any thread) --------------------------------------------------------- */
	/* One JSON log line with the plugin instance's name; message is free text (no personal
	 * data, see PRIVACY). */
	void (*log)(mdg_plugin_ctx *ctx, enum mdg_log_level level, const char *event,
		    const char *message);

	/* --- configuration (init only) ---------------------------------------------------- */
	/*
	 * Values of the instance's `config:` mapping in the daemon's YAML file.  Each returns
	 * MDG_OK and sets *out, MDG_ERR_NOT_FOUND when the key is absent and not required (*out
	 * is then the default), or MDG_ERR_INVALID after reporting "file:line:column: message"
	 * (the daemon then refuses to start).  Strings are owned by the host and live as long as
	 * the instance; paths are resolved against the config file's directory.
	 */
	int (*config_string)(mdg_plugin_ctx *ctx, const char *key, int required, const char *dflt,
			     const char **out);
	int (*config_path)(mdg_plugin_ctx *ctx, const char *key, int required, const char *dflt,
			   const char **out);
	int (*config_int)(mdg_plugin_ctx *ctx, const char *key, int required, int64_t min,
			  int64_t max, int64_t dflt, int64_t *out);
	int (*config_duration_ms)(mdg_plugin_ctx *ctx, const char *key, int required, uint64_t dflt,
				  uint64_t *out);
	/* Reports a problem with a key's value at its position (e.g. a file that does not
	 * open); returns MDG_ERR_INVALID for convenience. */
	int (*config_error)(mdg_plugin_ctx *ctx, const char *key, const char *message);

	/* --- the event loop (loop thread) ------------------------------------------------- */
	/* The host's libuv loop (a uv_loop_t *), for plugins that do their own I/O with
	 * libuv.  Handles a plugin opens it must close in fini(). */
	void *(*loop)(mdg_plugin_ctx *ctx);
	/* Milliseconds of a monotonic clock, the clock of mdg_fetch.deadline_ms (any thread). */
	uint64_t (*now_ms)(mdg_plugin_ctx *ctx);
	/* A one-shot timer: cb(arg) runs on the loop thread after ms unless stopped.  The timer
	 * is freed after it fires or is stopped. */
	mdg_timer *(*timer_start)(mdg_plugin_ctx *ctx, uint64_t ms, void (*cb)(void *arg),
				  void *arg);
	void (*timer_stop)(mdg_timer *timer);
	/* Runs work(arg) on a worker thread, then done(arg, status) on the loop thread. */
	int (*queue_work)(mdg_plugin_ctx *ctx, void (*work)(void *arg),
			  void (*done)(void *arg, int status), void *arg);

	/* --- metrics (any thread) --------------------------------------------------------- */
	/* A counter named madoguchi_plugin_<name>_total with labels plugin="<instance>" and
	 * the given extra labels (`a="b"` or ""), registered at init. */
	mdg_counter *(*counter)(mdg_plugin_ctx *ctx, const char *name, const char *help,
				const char *labels);
	void (*counter_add)(mdg_counter *counter, uint64_t n);

	/* --- record builder (any thread) -------------------------------------------------- */
	/*
	 * A record for one certificate type.  The four fields every record carries are set
	 * here; the type's other fields with record_set(), its lists with record_add_item() and
	 * item_set() (docs/records.md).  Values are UTF-8 strings; the host copies them.  A
	 * record is owned by the plugin until passed to complete(), which takes it (also on
	 * error); record_free() discards one that is not passed.
	 */
	mdg_record *(*record_new)(mdg_plugin_ctx *ctx, const char *certificate,
				  const char *resident_code, uint64_t version, const char *status,
				  int64_t as_of_unix);
	int (*record_set)(mdg_record *record, const char *field, const char *value);
	mdg_item *(*record_add_item)(mdg_record *record, const char *list);
	int (*item_set)(mdg_item *item, const char *field, const char *value);
	void (*record_free)(mdg_record *record);

	/* --- completion (any thread) ------------------------------------------------------ */
	/*
	 * Ends the fetch named by ticket: status MDG_OK with a record, or an error status with
	 * record NULL and a short reason (no personal data).  A ticket that is no longer live
	 * (timed out, cancelled, already completed, or never issued) is dropped and counted;
	 * the record is freed either way.
	 */
	void (*complete)(mdg_plugin_ctx *ctx, mdg_ticket ticket, int status, mdg_record *record,
			 const char *reason);

	/* --- change notification (any thread) --------------------------------------------- */
	/* The backend says a resident's record changed to version: records older than that are
	 * refused from then on (version fence, incident I3). */
	void (*notify_change)(mdg_plugin_ctx *ctx, const char *resident_code, uint64_t version);

	void *reserved[16]; /* for members added by later minors; always NULL */
} mdg_host;

/* What a plugin is and can do.  Returned by mdg_plugin_entry(); must stay valid and constant
 * while the plugin is loaded (a static const object). */
struct mdg_plugin_descriptor {
	uint32_t abi_major;  /* MDG_PLUGIN_ABI_MAJOR the plugin was built against */
	uint32_t abi_minor;  /* MDG_PLUGIN_ABI_MINOR the plugin was built against */
	uint32_t size;	     /* sizeof(struct mdg_plugin_descriptor) */
	uint32_t flags;	     /* MDG_PLUGIN_* */
	const char *name;    /* e.g. "sqlite-registry"; [a-z0-9-]+ */
	const char *version; /* dotted numbers, e.g. "1.2.3" (suspensions target ranges) */
	const char *vendor;
	const char *const *certificates; /* NULL-terminated list of types served */

	/*
	 * Creates an instance: read its config through host, open what it needs.  Returns
	 * MDG_OK and sets *instance, or an error (after host->config_error() or host->log()
	 * saying why).  The host and ctx outlive the instance.
	 */
	int (*init)(const mdg_host *host, mdg_plugin_ctx *ctx, void **instance);

	/* Releases everything of the instance; no callback of it runs after. */
	void (*fini)(void *instance);

	/*
	 * Starts fetching the record of fetch->resident_code for fetch->certificate.  Returns
	 * MDG_OK when the fetch is under way: the plugin then calls host->complete() exactly
	 * once for the ticket, now or later, from any thread.  Returns an error status when it
	 * cannot even start (the host then completes the fetch itself).  `fetch` and its strings
	 * are valid only during the call: copy what you keep.
	 */
	int (*fetch)(void *instance, const struct mdg_fetch *fetch);

	/* The host gave up on a ticket (deadline, client gone): stop working on it if you can.
	 * Completing it afterwards is harmless (dropped).  May be NULL. */
	void (*cancel)(void *instance, mdg_ticket ticket);

	/* MDG_OK when the backend is reachable; else an error and a short reason in detail.
	 * Called on the loop thread; must not block.  May be NULL. */
	int (*health)(void *instance, char *detail, size_t detail_size);

	void *reserved[8]; /* always NULL */
};

/* Every plugin defines this. */
const struct mdg_plugin_descriptor *mdg_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif
