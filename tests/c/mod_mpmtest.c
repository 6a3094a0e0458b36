/* Drives the MPM the way a module that suspends requests does, and logs
 * what the MPM does meanwhile (lines starting "mpmtest:" with `at=` in
 * microseconds since the epoch). Built at test time by tests/e2e_suspend.rs.
 *
 *   /suspend?poke    a timed callback moves the suspended connection on,
 *                    starts an unrelated timed callback, and keeps running
 *                    until that one has returned and a moment more.
 *   /suspend?late    the callback moves it on while its worker is still in
 *                    the suspend_connection hooks, and returns before the
 *                    connection is handed to the MPM.
 *   /suspend?thread  a thread of the module, not a timed callback, moves it.
 *   /slow?MS         answers after MS milliseconds.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_strings.h"
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

module AP_MODULE_DECLARE_DATA mpmtest_module;
APLOG_USE_MODULE(mpmtest);

/* One suspended request at a time per child: the tests send one. */
static conn_rec *watched;       /* resumes of it are logged */
static int mover_running;       /* what moved it has not returned yet */
static int awaiting_resume;
static conn_rec *slow_suspend;  /* its suspend_connection hook waits */
static int suspend_hook_entered;
static int callback_returned;
static int poke_returned;

#define GET(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

static void note(const char *what)
{
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                 "mpmtest: %s pid=%d at=%" APR_TIME_T_FMT,
                 what, (int)getpid(), apr_time_now());
}

/* Waits (bounded) until *flag is set. */
static void wait_for(int *flag)
{
    int i;
    for (i = 0; i < 300 && !GET(*flag); i++) {
        apr_sleep(apr_time_from_msec(10));
    }
}

static void write_answer(request_rec *r)
{
    static const char body[] = "moved on\n";
    ap_set_content_type(r, "text/plain");
    ap_set_content_length(r, sizeof(body) - 1);
    ap_rputs(body, r);
}

/* From outside the handler: httpd holds r->invoke_mtx until the handler
 * has returned and the connection is marked suspended. */
static void answer(request_rec *r)
{
    apr_thread_mutex_lock(r->invoke_mtx);
    write_answer(r);
    apr_thread_mutex_unlock(r->invoke_mtx);
}

/* Finishes the request; the connection's state becomes WRITE_COMPLETION. */
static void move_on(request_rec *r)
{
    SET(watched, r->connection);
    SET(awaiting_resume, 1);
    SET(mover_running, 1);
    ap_finalize_request_protocol(r);
    ap_process_request_after_handler(r);
    note("moved");
}

static void poked(void *baton)
{
    (void)baton;
    SET(poke_returned, 1);
}

static void poke_callback(void *baton)
{
    request_rec *r = baton;
    /* Until the handler has returned. */
    apr_thread_mutex_lock(r->invoke_mtx);
    apr_thread_mutex_unlock(r->invoke_mtx);
    move_on(r);
    SET(poke_returned, 0);
    ap_mpm_register_timed_callback(0, poked, NULL);
    wait_for(&poke_returned);
    /* The MPM looks at its suspended connections after `poked` returned. */
    apr_sleep(apr_time_from_msec(300));
    SET(mover_running, 0);
    note("returned");
}

static void late_callback(void *baton)
{
    request_rec *r = baton;
    wait_for(&suspend_hook_entered);
    answer(r);
    move_on(r);
    SET(mover_running, 0);
    note("returned");
    SET(callback_returned, 1);
}

static void *mover_thread(void *arg)
{
    request_rec *r = arg;
    apr_sleep(apr_time_from_msec(200));
    answer(r);
    move_on(r);
    SET(mover_running, 0);
    note("returned");
    return NULL;
}

static int suspend_handler(request_rec *r)
{
    const char *how = r->args ? r->args : "";
    if (!strcmp(how, "poke")) {
        write_answer(r);
        ap_mpm_register_timed_callback(apr_time_from_msec(100), poke_callback, r);
    }
    else if (!strcmp(how, "late")) {
        SET(suspend_hook_entered, 0);
        SET(callback_returned, 0);
        SET(slow_suspend, r->connection);
        ap_mpm_register_timed_callback(0, late_callback, r);
    }
    else if (!strcmp(how, "thread")) {
        pthread_t t;
        if (pthread_create(&t, NULL, mover_thread, r) != 0) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        pthread_detach(t);
    }
    else {
        return HTTP_BAD_REQUEST;
    }
    note("suspending");
    return SUSPENDED;
}

static int slow_handler(request_rec *r)
{
    long ms = r->args ? atol(r->args) : 1000;
    note("slow request started");
    apr_sleep(apr_time_from_msec(ms));
    ap_set_content_type(r, "text/plain");
    ap_rputs("slow\n", r);
    note("slow request answered");
    return OK;
}

static int handler(request_rec *r)
{
    if (!r->handler) {
        return DECLINED;
    }
    if (!strcmp(r->handler, "mpmtest-suspend")) {
        return suspend_handler(r);
    }
    if (!strcmp(r->handler, "mpmtest-slow")) {
        return slow_handler(r);
    }
    return DECLINED;
}

static void on_suspend(conn_rec *c, request_rec *r)
{
    (void)r;
    if (c == GET(slow_suspend)) {
        SET(slow_suspend, NULL);
        SET(suspend_hook_entered, 1);
        wait_for(&callback_returned);
        apr_sleep(apr_time_from_msec(100));
        note("suspend hook returned");
    }
}

static void on_resume(conn_rec *c, request_rec *r)
{
    (void)r;
    if (c == GET(watched) && GET(awaiting_resume)) {
        SET(awaiting_resume, 0);
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     "mpmtest: resumed pid=%d at=%" APR_TIME_T_FMT " mover_running=%d",
                     (int)getpid(), apr_time_now(), GET(mover_running));
    }
}

static void child_stopping(apr_pool_t *p, int graceful)
{
    (void)p;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                 "mpmtest: child_stopping graceful=%d pid=%d at=%" APR_TIME_T_FMT,
                 graceful, (int)getpid(), apr_time_now());
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(on_suspend, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_resume_connection(on_resume, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA mpmtest_module = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, register_hooks
};
