//! Is a complete HTTP/1.x request head in what the client has sent so far?
//! The worker that the head's bytes wake looks (MSG_PEEK, nothing consumed)
//! before httpd gets the connection, and parks it again if the head is not
//! complete, so that a client that sends its head slowly, or never
//! finishes it, holds no thread meanwhile.

/// What the peeked bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Hand over: a whole head, or as much as the cap allows.
    Ready,
    /// Keep waiting for more bytes.
    Partial,
    /// Not HTTP/1.x text (TLS, HTTP/2 frames...): hand over on first bytes.
    Other,
}

/// Looks at `data` (what a peek returned; `cap` is the most it could hold).
pub fn scan(data: &[u8], cap: usize) -> Head {
    // RFC 9112 lets a server ignore empty lines before the request line.
    let start = data.iter().position(|&b| b != b'\r' && b != b'\n');
    let Some(start) = start else {
        return if data.len() >= cap { Head::Ready } else { Head::Partial };
    };
    let data = &data[start..];
    if !data[0].is_ascii_uppercase() {
        return Head::Other;
    }
    let Some(eol) = data.iter().position(|&b| b == b'\n') else {
        return if start + data.len() >= cap { Head::Ready } else { Head::Partial };
    };
    // HTTP/0.9 has a request line and nothing else.
    if !data[..eol].windows(6).any(|w| w == b" HTTP/") {
        return Head::Ready;
    }
    let rest = &data[eol + 1..];
    if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
        return Head::Ready;
    }
    let blank_line = rest.windows(4).any(|w| w == b"\r\n\r\n") || rest.windows(2).any(|w| w == b"\n\n");
    if blank_line || start + data.len() >= cap {
        Head::Ready
    } else {
        Head::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_heads_are_ready() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1000), Head::Ready);
        assert_eq!(scan(b"GET / HTTP/1.0\r\n\r\n", 1000), Head::Ready);
        assert_eq!(scan(b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 1000), Head::Ready);
        assert_eq!(scan(b"\r\nGET / HTTP/1.1\nHost: x\n\n", 1000), Head::Ready);
        assert_eq!(scan(b"GET /\r\n", 1000), Head::Ready, "HTTP/0.9");
        assert_eq!(scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1000), Head::Ready);
    }

    #[test]
    fn partial_heads_wait() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nHost: x\r\n", 1000), Head::Partial);
        assert_eq!(scan(b"GET / HT", 1000), Head::Partial);
        assert_eq!(scan(b"G", 1000), Head::Partial);
        assert_eq!(scan(b"\r\n", 1000), Head::Partial);
    }

    #[test]
    fn the_cap_hands_over() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\nX: aaaa", 20), Head::Ready);
        assert_eq!(scan(b"GET /aaaaaaaaaaaaaaaaaaaaaaa", 20), Head::Ready);
    }

    #[test]
    fn other_protocols_go_at_once() {
        assert_eq!(scan(&[0x16, 0x03, 0x01], 1000), Head::Other, "TLS handshake");
        assert_eq!(scan(&[0x17, 0x03, 0x03], 1000), Head::Other, "TLS record");
        assert_eq!(scan(b"get / HTTP/1.1\r\n", 1000), Head::Other);
    }
}

/// How long a request head may take to arrive, from its first byte: Timeout,
/// or mod_reqtimeout's header stage when that module is loaded, which starts
/// at `initial` and grows by one second per `min_rate` bytes received, up
/// to `max` (RequestReadTimeout header=initial-max,MinRate=min_rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimit {
    pub initial: std::time::Duration,
    pub max: std::time::Duration,
    pub min_rate: u32,
}

impl HeadLimit {
    pub fn fixed(t: std::time::Duration) -> Self {
        HeadLimit { initial: t, max: t, min_rate: 0 }
    }

    /// mod_reqtimeout's documented default: header=20-40,MinRate=500.
    pub fn reqtimeout_default() -> Self {
        HeadLimit {
            initial: std::time::Duration::from_secs(20),
            max: std::time::Duration::from_secs(40),
            min_rate: 500,
        }
    }

    /// The header stage of a RequestReadTimeout argument list; `Some(None)`
    /// when it turns the header limit off (header=0), `None` when it does
    /// not set it.
    pub fn from_reqtimeout(args: &str) -> Option<Option<Self>> {
        let arg = args.split_whitespace().find(|a| a.len() > 7 && a[..7].eq_ignore_ascii_case("header="))?;
        let mut parts = arg[7..].split(',');
        let times = parts.next()?;
        let (initial, max) = match times.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let t = times.parse::<u64>().ok()?;
                (t, t)
            }
        };
        if initial == 0 {
            return Some(None);
        }
        let min_rate = parts
            .find_map(|p| p.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case("MinRate")).map(|(_, v)| v))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let s = std::time::Duration::from_secs;
        Some(Some(HeadLimit { initial: s(initial), max: s(max.max(initial)), min_rate }))
    }

    /// The limit of a server's connections: its own RequestReadTimeout's
    /// header stage, else the main server's (mod_reqtimeout merges a virtual
    /// host's settings over the main server's so), else mod_reqtimeout's
    /// default; `Timeout` (`timeout`) where mod_reqtimeout is not loaded or
    /// `header=0` turns its header limit off. `own` and `main` are the
    /// directive's argument lists in the server's section and the main one.
    pub fn for_server(reqtimeout: bool, own: &[String], main: &[String], timeout: std::time::Duration) -> Self {
        if !reqtimeout {
            return HeadLimit::fixed(timeout);
        }
        let last = |args: &[String]| args.iter().filter_map(|a| HeadLimit::from_reqtimeout(a)).next_back();
        match last(own).or_else(|| last(main)) {
            Some(Some(l)) => l,
            Some(None) => HeadLimit::fixed(timeout),
            None => HeadLimit::reqtimeout_default(),
        }
    }

    /// The limit once `bytes` of the head have arrived, in whole seconds so
    /// that the timeout queues stay few.
    pub fn after(&self, bytes: usize) -> std::time::Duration {
        if self.min_rate == 0 {
            return self.initial;
        }
        let extra = std::time::Duration::from_secs(bytes as u64 / u64::from(self.min_rate));
        (self.initial + extra).min(self.max)
    }
}

/// The head limit of each server of the configuration. A connection
/// carries the index of its server's limit (0: the main server's), four
/// bytes where an idle connection costs a few hundred.
#[derive(Debug, Default)]
pub struct HeadLimits {
    limits: Vec<HeadLimit>,
    by_server: std::collections::HashMap<usize, u32>,
}

impl HeadLimits {
    /// Built from (server key, limit) pairs, the main server first.
    pub fn new(servers: impl IntoIterator<Item = (usize, HeadLimit)>) -> Self {
        let mut l = HeadLimits::default();
        for (key, limit) in servers {
            l.by_server.entry(key).or_insert(l.limits.len() as u32);
            l.limits.push(limit);
        }
        l
    }

    /// The index of the limit of connections whose base server is `key`
    /// (the main server's for one not in the configuration).
    pub fn index_of(&self, key: usize) -> u32 {
        self.by_server.get(&key).copied().unwrap_or(0)
    }

    /// The limit at `index`; httpd's default Timeout if there is none (no
    /// server was configured, which httpd does not allow).
    pub fn get(&self, index: u32) -> HeadLimit {
        self.limits.get(index as usize).copied().unwrap_or(HeadLimit::fixed(std::time::Duration::from_secs(60)))
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reqtimeout_header_stage_is_read() {
        let l = HeadLimit::from_reqtimeout("header=20-40,MinRate=500 body=20,MinRate=500").unwrap().unwrap();
        assert_eq!(l, HeadLimit::reqtimeout_default());
        assert_eq!(l.after(0), Duration::from_secs(20));
        assert_eq!(l.after(1500), Duration::from_secs(23));
        assert_eq!(l.after(1 << 20), Duration::from_secs(40));
        let l = HeadLimit::from_reqtimeout("body=5 Header=2").unwrap().unwrap();
        assert_eq!((l.initial, l.max, l.after(10_000)), (Duration::from_secs(2), Duration::from_secs(2), Duration::from_secs(2)));
        assert_eq!(HeadLimit::from_reqtimeout("header=0 body=10"), Some(None));
        assert_eq!(HeadLimit::from_reqtimeout("body=10"), None);
        assert_eq!(HeadLimit::from_reqtimeout("header=x"), None);
    }

    #[test]
    fn limits_are_found_by_server_and_the_main_one_stands_in() {
        let s = Duration::from_secs;
        let l = HeadLimits::new([(10, HeadLimit::fixed(s(5))), (20, HeadLimit::fixed(s(2)))]);
        assert_eq!(l.get(l.index_of(20)), HeadLimit::fixed(s(2)));
        assert_eq!(l.get(l.index_of(10)), HeadLimit::fixed(s(5)));
        assert_eq!(l.get(l.index_of(99)), HeadLimit::fixed(s(5)), "an unknown server has the main server's");
    }

    #[test]
    fn a_server_takes_its_own_header_stage_else_the_main_servers() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = Duration::from_secs(60);
        let own = HeadLimit::for_server(true, &v(&["header=5"]), &v(&["header=20-40,MinRate=500"]), t);
        assert_eq!(own, HeadLimit::fixed(Duration::from_secs(5)));
        let main = HeadLimit::for_server(true, &v(&["body=5"]), &v(&["header=3"]), t);
        assert_eq!(main, HeadLimit::fixed(Duration::from_secs(3)));
        assert_eq!(HeadLimit::for_server(true, &[], &[], t), HeadLimit::reqtimeout_default());
        assert_eq!(HeadLimit::for_server(true, &v(&["header=0"]), &v(&["header=3"]), t), HeadLimit::fixed(t));
        assert_eq!(HeadLimit::for_server(false, &v(&["header=3"]), &[], t), HeadLimit::fixed(t));
    }
}
