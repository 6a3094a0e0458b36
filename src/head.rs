//! Is a complete HTTP/1.x request head in what the client has sent so far?
//! The listener looks (MSG_PEEK, nothing consumed) before it gives a
//! connection to a worker, so that a client that sends its head slowly, or
//! never finishes it, holds no thread meanwhile.

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
