/*
 * The MPM's directive table.  It lives in C because LISTEN_COMMANDS,
 * AP_GRACEFUL_SHUTDOWN_TIMEOUT_COMMAND and AP_INIT_TAKE1 are macros.
 * Not const: httpd's config code takes it as writable module data.
 */
#include "httpd.h"
#include "http_config.h"
#include "ap_listen.h"
#include "mpm_common.h"
#include "mod_mpm_event_rs.h"

command_rec event_rs_cmds[] = {
    LISTEN_COMMANDS,
    AP_INIT_TAKE1("StartServers", event_rs_set_number, NULL, RSRC_CONF,
                  "Number of child processes launched at server startup"),
    AP_INIT_TAKE1("ServerLimit", event_rs_set_number, NULL, RSRC_CONF,
                  "Maximum number of child processes for this run of Apache"),
    AP_INIT_TAKE1("MinSpareThreads", event_rs_set_number, NULL, RSRC_CONF,
                  "Minimum number of idle threads, to handle request spikes"),
    AP_INIT_TAKE1("MaxSpareThreads", event_rs_set_number, NULL, RSRC_CONF,
                  "Maximum number of idle threads"),
    AP_INIT_TAKE1("MaxClients", event_rs_set_number, NULL, RSRC_CONF,
                  "Deprecated name of MaxRequestWorkers"),
    AP_INIT_TAKE1("MaxRequestWorkers", event_rs_set_number, NULL, RSRC_CONF,
                  "Maximum number of threads alive at the same time"),
    AP_INIT_TAKE1("ThreadsPerChild", event_rs_set_number, NULL, RSRC_CONF,
                  "Number of threads each child creates"),
    AP_INIT_TAKE1("ThreadLimit", event_rs_set_number, NULL, RSRC_CONF,
                  "Maximum number of worker threads per child process for this "
                  "run of Apache - Upper limit for ThreadsPerChild"),
    AP_INIT_TAKE1("AsyncRequestWorkerFactor", event_rs_set_worker_factor, NULL,
                  RSRC_CONF,
                  "How many additional connects will be accepted per idle "
                  "worker thread"),
    AP_INIT_FLAG("AsyncRequestHead", event_rs_set_async_request_head, NULL,
                 RSRC_CONF,
                 "On (default): a connection waits in the listener, not in a "
                 "worker thread, until its HTTP/1.x request head is complete"),
    AP_INIT_TAKE1("ConnectionBudget", event_rs_set_connection_budget, NULL,
                  RSRC_CONF,
                  "Open connections per child, counting those waiting for a "
                  "request head or idle (auto: from the descriptor limit); "
                  "when full, the slowest waiting ones are closed"),
    AP_GRACEFUL_SHUTDOWN_TIMEOUT_COMMAND,
    {NULL}
};
