/*
 * The Rust entry points that the C glue (apache-glue/) references, and the
 * glue's own symbols that Rust references.  httpd itself reaches the module
 * only through the exported data symbol `mpm_event_module`.
 */
#ifndef MOD_MPM_EVENT_RS_H
#define MOD_MPM_EVENT_RS_H

#include "httpd.h"
#include "http_config.h"

/* Directive setters (Rust, src/config.rs): one for every MPM directive that
 * takes a whole number, one for AsyncRequestWorkerFactor. */
const char *event_rs_set_number(cmd_parms *cmd, void *dummy, const char *arg);
const char *event_rs_set_worker_factor(cmd_parms *cmd, void *dummy,
                                       const char *arg);
/* ConnectionBudget auto|N (ours: see src/budget.rs). */
const char *event_rs_set_connection_budget(cmd_parms *cmd, void *dummy,
                                           const char *arg);
/* AsyncRequestHead On|Off (ours; stock has no such directive). */
const char *event_rs_set_async_request_head(cmd_parms *cmd, void *dummy, int on);

/* The directive table (C, apache-glue/commands.c): it needs httpd's
 * LISTEN_COMMANDS and AP_INIT_* macros, which bindgen cannot expand. */
extern command_rec event_rs_cmds[];

#endif
