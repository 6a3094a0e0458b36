//! The MPM's directives: parsing (strict: a value that is not a number is a
//! start-up error naming the directive, where stock reads it as 0), the stock
//! defaults, and the clamping with stock's warnings (event.c check_config).

use std::sync::Mutex;

use crate::ffi::retained::FirstLimits;

/// AsyncRequestWorkerFactor is kept in sixteenths, as stock does, so that the
/// per-accept limit check stays in integers.
pub const WORKER_FACTOR_SCALE: u32 = 16;
pub const MAX_SERVER_LIMIT: i32 = 20000;
pub const MAX_THREAD_LIMIT: i32 = 100000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MpmConfig {
    pub start_servers: i32,
    pub server_limit: i32,
    pub min_spare_threads: i32,
    pub max_spare_threads: i32,
    pub max_workers: i32,
    pub threads_per_child: i32,
    pub thread_limit: i32,
    pub worker_factor: u32,
    /// MaxRequestWorkers / ThreadsPerChild, derived by `check`.
    pub active_daemons_limit: i32,
    /// AsyncRequestHead: wait in the pollset, not in a worker, until an
    /// HTTP/1.x request head is complete (on HTTP listeners only, see
    /// listener::speaks_http).
    pub async_request_head: bool,
    /// ConnectionBudget: open connections per child, 0 when derived from
    /// the child's descriptor limit (see `crate::budget`).
    pub connection_budget: u32,
}

impl Default for MpmConfig {
    fn default() -> Self {
        let threads_per_child = 25;
        let server_limit = 16;
        MpmConfig {
            start_servers: 3,
            server_limit,
            min_spare_threads: 3 * threads_per_child,
            max_spare_threads: 10 * threads_per_child,
            max_workers: server_limit * threads_per_child,
            threads_per_child,
            thread_limit: 64,
            worker_factor: 2 * WORKER_FACTOR_SCALE,
            active_daemons_limit: server_limit,
            async_request_head: true,
            connection_budget: 0,
        }
    }
}

/// The directives that take a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberDirective {
    StartServers,
    ServerLimit,
    MinSpareThreads,
    MaxSpareThreads,
    MaxRequestWorkers,
    ThreadsPerChild,
    ThreadLimit,
}

impl NumberDirective {
    /// Maps a directive name (as httpd passes it, any case) to its field.
    /// MaxClients is the old name of MaxRequestWorkers.
    pub fn from_name(name: &str) -> Option<Self> {
        use NumberDirective::*;
        const ALL: [(&str, NumberDirective); 8] = [
            ("StartServers", StartServers),
            ("ServerLimit", ServerLimit),
            ("MinSpareThreads", MinSpareThreads),
            ("MaxSpareThreads", MaxSpareThreads),
            ("MaxRequestWorkers", MaxRequestWorkers),
            ("MaxClients", MaxRequestWorkers),
            ("ThreadsPerChild", ThreadsPerChild),
            ("ThreadLimit", ThreadLimit),
        ];
        ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, d)| d)
    }
}

/// Parses a whole number the way an administrator writes one: optional sign,
/// decimal digits, nothing else.
pub fn parse_number(directive: &str, arg: &str) -> Result<i32, String> {
    arg.trim().parse::<i32>().map_err(|_| {
        format!("{directive}: '{arg}' is not a whole number")
    })
}

/// Parses AsyncRequestWorkerFactor (a positive decimal) into sixteenths;
/// values below 1 count as 1, as in stock.
pub fn parse_worker_factor(arg: &str) -> Result<u32, String> {
    let val: f64 = arg
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("AsyncRequestWorkerFactor: '{arg}' is not a number"))?;
    if val <= 0.0 {
        return Err("AsyncRequestWorkerFactor argument must be a positive number".to_owned());
    }
    let scaled = (val * f64::from(WORKER_FACTOR_SCALE)).min(f64::from(u32::MAX)) as u32;
    Ok(scaled.max(WORKER_FACTOR_SCALE))
}

/// Parses ConnectionBudget: `auto` (from the descriptor limit, kept as 0)
/// or a positive whole number of connections per child.
pub fn parse_connection_budget(arg: &str) -> Result<u32, String> {
    let arg = arg.trim();
    if arg.eq_ignore_ascii_case("auto") {
        return Ok(0);
    }
    match arg.parse::<u32>() {
        Ok(0) => Err("ConnectionBudget must be a positive number of connections per child, or auto".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("ConnectionBudget: '{arg}' is not a whole number of connections (or auto)")),
    }
}

/// A clamping warning, worded for start-up (console) or for a restart
/// (error log), with stock's message numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub startup: String,
    pub restart: String,
}

fn warn(out: &mut Vec<Warning>, startup: String, restart: String) {
    out.push(Warning { startup, restart });
}

impl MpmConfig {
    pub fn set(&mut self, d: NumberDirective, v: i32) {
        use NumberDirective::*;
        match d {
            StartServers => self.start_servers = v,
            ServerLimit => self.server_limit = v,
            MinSpareThreads => self.min_spare_threads = v,
            MaxSpareThreads => self.max_spare_threads = v,
            MaxRequestWorkers => self.max_workers = v,
            ThreadsPerChild => self.threads_per_child = v,
            ThreadLimit => self.thread_limit = v,
        }
    }

    /// Brings every value into range, as stock's check_config does, and
    /// returns the warnings to log. `first` carries the limits of the first
    /// generation (zero at start-up) and is updated.
    pub fn check(&mut self, first: &mut FirstLimits) -> Vec<Warning> {
        let mut w = Vec::new();
        if self.server_limit > MAX_SERVER_LIMIT {
            warn(&mut w,
                format!("AH00497: WARNING: ServerLimit of {} exceeds compile-time limit of {MAX_SERVER_LIMIT} servers, decreasing to {MAX_SERVER_LIMIT}.", self.server_limit),
                format!("AH00498: ServerLimit of {} exceeds compile-time limit of {MAX_SERVER_LIMIT}, decreasing to match", self.server_limit));
            self.server_limit = MAX_SERVER_LIMIT;
        } else if self.server_limit < 1 {
            warn(&mut w,
                format!("AH00499: WARNING: ServerLimit of {} not allowed, increasing to 1.", self.server_limit),
                format!("AH00500: ServerLimit of {} not allowed, increasing to 1", self.server_limit));
            self.server_limit = 1;
        }
        if first.server_limit == 0 {
            first.server_limit = self.server_limit;
        } else if self.server_limit != first.server_limit {
            let m = format!("AH00501: changing ServerLimit to {} from original value of {} not allowed during restart", self.server_limit, first.server_limit);
            warn(&mut w, m.clone(), m);
            self.server_limit = first.server_limit;
        }

        if self.thread_limit > MAX_THREAD_LIMIT {
            warn(&mut w,
                format!("AH00502: WARNING: ThreadLimit of {} exceeds compile-time limit of {MAX_THREAD_LIMIT} threads, decreasing to {MAX_THREAD_LIMIT}.", self.thread_limit),
                format!("AH00503: ThreadLimit of {} exceeds compile-time limit of {MAX_THREAD_LIMIT}, decreasing to match", self.thread_limit));
            self.thread_limit = MAX_THREAD_LIMIT;
        } else if self.thread_limit < 1 {
            warn(&mut w,
                format!("AH00504: WARNING: ThreadLimit of {} not allowed, increasing to 1.", self.thread_limit),
                format!("AH00505: ThreadLimit of {} not allowed, increasing to 1", self.thread_limit));
            self.thread_limit = 1;
        }
        if first.thread_limit == 0 {
            first.thread_limit = self.thread_limit;
        } else if self.thread_limit != first.thread_limit {
            let m = format!("AH00506: changing ThreadLimit to {} from original value of {} not allowed during restart", self.thread_limit, first.thread_limit);
            warn(&mut w, m.clone(), m);
            self.thread_limit = first.thread_limit;
        }

        if self.threads_per_child > self.thread_limit {
            warn(&mut w,
                format!("AH00507: WARNING: ThreadsPerChild of {} exceeds ThreadLimit of {} threads, decreasing to {}. To increase, please see the ThreadLimit directive.", self.threads_per_child, self.thread_limit, self.thread_limit),
                format!("AH00508: ThreadsPerChild of {} exceeds ThreadLimit of {}, decreasing to match", self.threads_per_child, self.thread_limit));
            self.threads_per_child = self.thread_limit;
        } else if self.threads_per_child < 1 {
            warn(&mut w,
                format!("AH00509: WARNING: ThreadsPerChild of {} not allowed, increasing to 1.", self.threads_per_child),
                format!("AH00510: ThreadsPerChild of {} not allowed, increasing to 1", self.threads_per_child));
            self.threads_per_child = 1;
        }

        if self.max_workers < self.threads_per_child {
            warn(&mut w,
                format!("AH00511: WARNING: MaxRequestWorkers of {} is less than ThreadsPerChild of {}, increasing to {}. MaxRequestWorkers must be at least as large as the number of threads in a single server.", self.max_workers, self.threads_per_child, self.threads_per_child),
                format!("AH00512: MaxRequestWorkers of {} is less than ThreadsPerChild of {}, increasing to match", self.max_workers, self.threads_per_child));
            self.max_workers = self.threads_per_child;
        }

        self.active_daemons_limit = self.max_workers / self.threads_per_child;
        if self.max_workers % self.threads_per_child != 0 {
            let rounded = self.active_daemons_limit * self.threads_per_child;
            warn(&mut w,
                format!("AH00513: WARNING: MaxRequestWorkers of {} is not an integer multiple of ThreadsPerChild of {}, decreasing to nearest multiple {}, for a maximum of {} servers.", self.max_workers, self.threads_per_child, rounded, self.active_daemons_limit),
                format!("AH00514: MaxRequestWorkers of {} is not an integer multiple of ThreadsPerChild of {}, decreasing to nearest multiple {}", self.max_workers, self.threads_per_child, rounded));
            self.max_workers = rounded;
        }

        if self.active_daemons_limit > self.server_limit {
            let capped = self.server_limit * self.threads_per_child;
            warn(&mut w,
                format!("AH00515: WARNING: MaxRequestWorkers of {} would require {} servers and would exceed ServerLimit of {}, decreasing to {}. To increase, please see the ServerLimit directive.", self.max_workers, self.active_daemons_limit, self.server_limit, capped),
                format!("AH00516: MaxRequestWorkers of {} would require {} servers and exceed ServerLimit of {}, decreasing to {}", self.max_workers, self.active_daemons_limit, self.server_limit, capped));
            self.active_daemons_limit = self.server_limit;
        }

        if self.start_servers < 1 {
            warn(&mut w,
                format!("AH00517: WARNING: StartServers of {} not allowed, increasing to 1.", self.start_servers),
                format!("AH00518: StartServers of {} not allowed, increasing to 1", self.start_servers));
            self.start_servers = 1;
        }

        if self.min_spare_threads < 1 {
            warn(&mut w,
                format!("AH00519: WARNING: MinSpareThreads of {} not allowed, increasing to 1 to avoid almost certain server failure. Please read the documentation.", self.min_spare_threads),
                format!("AH00520: MinSpareThreads of {} not allowed, increasing to 1", self.min_spare_threads));
            self.min_spare_threads = 1;
        }
        w
    }

    /// The run-time adjustments stock makes once the number of listener
    /// buckets is known (event_run): at least one child per bucket, and
    /// spare-thread bounds that keep every bucket served.
    pub fn fit_buckets(&mut self, buckets: i32) {
        self.active_daemons_limit = self.active_daemons_limit.max(buckets);
        self.start_servers = self.start_servers.max(buckets);
        let min = self.threads_per_child * (buckets - 1) + buckets;
        self.min_spare_threads = self.min_spare_threads.max(min);
        let max = self.min_spare_threads + (self.threads_per_child + 1) * buckets;
        self.max_spare_threads = self.max_spare_threads.max(max);
    }
}

/// The configuration being read (set by the directives, reset by
/// pre_config at every load of the DSO).
pub static CURRENT: Mutex<MpmConfig> = Mutex::new(MpmConfig {
    start_servers: 3,
    server_limit: 16,
    min_spare_threads: 75,
    max_spare_threads: 250,
    max_workers: 400,
    threads_per_child: 25,
    thread_limit: 64,
    worker_factor: 2 * WORKER_FACTOR_SCALE,
    active_daemons_limit: 16,
    async_request_head: true,
    connection_budget: 0,
});

/// A copy of the configuration in force.
pub fn current() -> MpmConfig {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn update(f: impl FnOnce(&mut MpmConfig)) {
    f(&mut CURRENT.lock().unwrap_or_else(|e| e.into_inner()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_initial_value_is_the_default() {
        assert_eq!(current(), MpmConfig::default());
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_number("ThreadsPerChild", "30"), Ok(30));
        assert_eq!(parse_number("ThreadsPerChild", " -2 "), Ok(-2));
        for bad in ["abc", "", "3x", "1.5", "99999999999"] {
            let e = parse_number("ThreadsPerChild", bad).unwrap_err();
            assert!(e.starts_with("ThreadsPerChild:"), "{e}");
        }
    }

    #[test]
    fn connection_budget_is_auto_or_positive() {
        assert_eq!(parse_connection_budget("auto"), Ok(0));
        assert_eq!(parse_connection_budget(" AUTO "), Ok(0));
        assert_eq!(parse_connection_budget("5000"), Ok(5000));
        for bad in ["0", "-3", "1e4", "lots", ""] {
            assert!(parse_connection_budget(bad).unwrap_err().contains("ConnectionBudget"), "{bad}");
        }
    }

    #[test]
    fn worker_factor_is_scaled_and_floored() {
        assert_eq!(parse_worker_factor("2"), Ok(32));
        assert_eq!(parse_worker_factor("0.5"), Ok(16));
        assert_eq!(parse_worker_factor("1.25"), Ok(20));
        assert!(parse_worker_factor("x").unwrap_err().contains("AsyncRequestWorkerFactor"));
        assert!(parse_worker_factor("inf").is_err());
        assert!(parse_worker_factor("0").unwrap_err().contains("positive"));
    }

    #[test]
    fn names_map_case_insensitively_and_maxclients_is_an_alias() {
        assert_eq!(NumberDirective::from_name("maxclients"), Some(NumberDirective::MaxRequestWorkers));
        assert_eq!(NumberDirective::from_name("THREADLIMIT"), Some(NumberDirective::ThreadLimit));
        assert_eq!(NumberDirective::from_name("Timeout"), None);
    }

    #[test]
    fn defaults_need_no_clamping() {
        let mut c = MpmConfig::default();
        let mut first = FirstLimits::default();
        assert!(c.check(&mut first).is_empty());
        assert_eq!(c.active_daemons_limit, 16);
        assert_eq!(first, FirstLimits { server_limit: 16, thread_limit: 64 });
    }

    #[test]
    fn clamps_like_stock() {
        let mut c = MpmConfig { threads_per_child: 100, max_workers: 30, start_servers: 0, ..Default::default() };
        let w = c.check(&mut FirstLimits::default());
        assert_eq!(c.threads_per_child, 64);
        assert_eq!(c.max_workers, 64);
        assert_eq!(c.start_servers, 1);
        assert!(w[0].startup.contains("ThreadsPerChild of 100 exceeds ThreadLimit of 64 threads, decreasing to 64."));
        assert!(w[1].startup.contains("MaxRequestWorkers of 30 is less than ThreadsPerChild of 64"));
        assert!(w[2].startup.contains("StartServers of 0 not allowed, increasing to 1."));

        let mut c = MpmConfig { max_workers: 30, ..Default::default() };
        let w = c.check(&mut FirstLimits::default());
        assert_eq!((c.max_workers, c.active_daemons_limit), (25, 1));
        assert!(w[0].startup.contains("decreasing to nearest multiple 25, for a maximum of 1 servers."));

        let mut c = MpmConfig { server_limit: 30000, max_workers: 1000, ..Default::default() };
        c.check(&mut FirstLimits::default());
        assert_eq!((c.server_limit, c.active_daemons_limit), (20000, 40));

        let mut c = MpmConfig { server_limit: 2, ..Default::default() };
        let w = c.check(&mut FirstLimits::default());
        assert_eq!(c.active_daemons_limit, 2);
        assert!(w[0].startup.contains("would exceed ServerLimit of 2, decreasing to 50."));
    }

    #[test]
    fn limits_are_fixed_after_the_first_generation() {
        let mut first = FirstLimits { server_limit: 16, thread_limit: 64 };
        let mut c = MpmConfig { server_limit: 8, thread_limit: 32, threads_per_child: 25, ..Default::default() };
        let w = c.check(&mut first);
        assert_eq!((c.server_limit, c.thread_limit), (16, 64));
        assert!(w[0].restart.contains("changing ServerLimit to 8 from original value of 16"));
        assert!(w[1].restart.contains("changing ThreadLimit to 32 from original value of 64"));
    }

    #[test]
    fn buckets_raise_spares() {
        let mut c = MpmConfig::default();
        c.fit_buckets(2);
        assert_eq!(c.min_spare_threads, 75);
        assert_eq!(c.max_spare_threads, 250);
        let mut c = MpmConfig { min_spare_threads: 1, max_spare_threads: 1, ..Default::default() };
        c.fit_buckets(2);
        assert_eq!(c.min_spare_threads, 27);
        assert_eq!(c.max_spare_threads, 27 + 52);
    }
}
