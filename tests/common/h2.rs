//! A minimal HTTP/2 client over cleartext (prior knowledge): GETs on one
//! connection, their answers, and what the server sends on its own
//! (GOAWAY).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Server, server};

pub struct H2 {
    stream: TcpStream,
    buf: Vec<u8>,
    next_stream: u32,
}

pub const FRAME_DATA: u8 = 0;
pub const FRAME_HEADERS: u8 = 1;
pub const FRAME_SETTINGS: u8 = 4;
pub const FRAME_GOAWAY: u8 = 7;
pub const END_STREAM: u8 = 1;

impl H2 {
    pub fn connect(server: &Server) -> H2 {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h2 = H2 { stream, buf: Vec::new(), next_stream: 1 };
        h2.stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        h2.frame(FRAME_SETTINGS, 0, 0, &[]);
        h2
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        self.stream.write_all(&f).unwrap();
    }

    /// GET `path`: the response's status and body, or what went wrong.
    pub fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let id = self.next_stream;
        self.next_stream += 2;
        // HPACK: :method GET, :scheme http (static 2, 6), then :path and
        // :authority as literals without indexing (name indexes 4 and 1).
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend(path.as_bytes());
        block.extend([0x01, 9]);
        block.extend(b"127.0.0.1");
        self.frame(FRAME_HEADERS, END_STREAM | 4, id, &block);
        let (mut status, mut body) = (0, Vec::new());
        loop {
            let (kind, flags, stream, payload) = self.read_frame()?;
            match kind {
                FRAME_SETTINGS if flags & 1 == 0 => self.frame(FRAME_SETTINGS, 1, 0, &[]),
                FRAME_GOAWAY => return Err(format!("GOAWAY {:02x?}", payload)),
                FRAME_HEADERS if stream == id => {
                    // mod_http2 sends :status 200 as static index 8.
                    status = if payload.first() == Some(&0x88) { 200 } else { 1 };
                }
                FRAME_DATA if stream == id => body.extend(&payload),
                _ => {}
            }
            if stream == id && flags & END_STREAM != 0 && (kind == FRAME_DATA || kind == FRAME_HEADERS) {
                return Ok((status, body));
            }
        }
    }

    pub fn read_frame(&mut self) -> Result<(u8, u8, u32, Vec<u8>), String> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Ok((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Waits up to `within` for the server's GOAWAY: its error code and
    /// last stream id, and whether the server closed the connection after
    /// it (EOF within the same time).
    pub fn goaway(&mut self, within: Duration) -> Result<(u32, u32, bool), String> {
        self.stream.set_read_timeout(Some(within)).unwrap();
        loop {
            let (kind, _, _, payload) = self.read_frame()?;
            if kind == FRAME_GOAWAY && payload.len() >= 8 {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let closed = loop {
                    match self.read_frame() {
                        Err(e) => break e == "connection closed",
                        Ok(_) => continue,
                    }
                };
                return Ok((code, last, closed));
            }
        }
    }
}

/// A server of one child that speaks h2c (prior knowledge and Upgrade).
pub fn h2c_server(keep_alive_timeout: u32) -> Server {
    server()
        .without_cgi()
        .keep_alive_timeout(keep_alive_timeout)
        .load_module("http2_module", "mod_http2.so")
        .directives("ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n")
        .directives("Protocols h2c http/1.1\n")
        .start()
}
