//! A read-side guard for HTTP/1 client connections: it spots a request head
//! carrying both `Content-Length` and `Transfer-Encoding`, or one with a line
//! ended by a bare LF, before hyper sees it, so the handler can refuse that
//! request.
//!
//! hyper accepts such a request (RFC 9112 section 6.1 allows it): it frames
//! the body by `Transfer-Encoding`, drops `Content-Length` and closes the
//! connection after the response. By the time the request reaches the
//! handler nothing shows that a `Content-Length` was there, so we look at
//! the bytes instead. hyper (like httparse, and nginx) also takes a bare LF
//! as a line ending (RFC 9112 section 2.2 allows it); a server behind us that
//! does not would read the head differently, so it is refused as well.
//!
//! [`H1Guard`] wraps the client socket and passes every byte through
//! unchanged. On the way it feeds them to a [`FramingScanner`], which follows
//! HTTP/1 request framing the way hyper does: a head (parsed with `httparse`,
//! hyper's own parser, with hyper's defaults), then its body (`Content-Length`
//! bytes, or a chunked body with extensions and trailers, byte for byte as
//! hyper's decoder reads it), then the next head. When a head has both
//! headers, the scanner reports its index (0-based, in order of arrival on
//! the connection) into the connection's [`FramingAlarm`], from inside
//! `poll_read`, before hyper gets the bytes. hyper dispatches HTTP/1 requests
//! one at a time in the same order, so the handler counts them and refuses
//! the request whose index reaches the recorded one.
//!
//! The scanner stops looking (passthrough, for good) on anything hyper would
//! refuse itself or where the bytes stop being HTTP/1 requests: the HTTP/2
//! prior-knowledge preface, a head that does not parse or outgrows the
//! header size limit (hyper answers 400/431), a malformed chunked body (hyper
//! fails the body), and tunnel bytes after an accepted `Upgrade`/`CONNECT`
//! (they fail to parse as a head or outgrow the limit; hyper dispatches
//! nothing after an upgrade, so tunnel bytes that happen to look like a
//! request head can never get a real request refused).
//! It never rejects anything itself. Once it has reported a head it stops as
//! well: hyper closes the connection after that request.
//!
//! Cost: a head that arrives whole in one read is parsed in place; bytes are
//! copied (into a buffer kept for the connection) only while a head is split
//! across reads, which is always the case for the first request, whose first
//! bytes hyper-util reads separately to detect HTTP/2. Body bytes are
//! skipped by count, except the size lines and trailers of chunked bodies.

use crate::proxy::chunked::{ChunkedEnd, ChunkedScanner};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's default limit on the number of request headers (more -> 431).
const MAX_HEADERS: usize = 100;

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFault {
    /// Both `Content-Length` and `Transfer-Encoding`.
    BothLengths = 0,
    /// A line of the head ends in a bare LF, not CRLF.
    BareLf = 1,
}

/// What the guard found on one connection, shared with the request handler.
#[derive(Debug)]
pub struct FramingAlarm {
    /// Index of the first refused request head; `u64::MAX` while there is
    /// none. (The scanner stops after it: there is at most one.)
    first_refused: AtomicU64,
    /// Its `HeadFault`.
    fault: AtomicU8,
    /// Requests the handler has taken from this connection so far.
    taken: AtomicU64,
}

impl FramingAlarm {
    pub fn new() -> Arc<Self> {
        Arc::new(FramingAlarm {
            first_refused: AtomicU64::new(u64::MAX),
            fault: AtomicU8::new(HeadFault::BothLengths as u8),
            taken: AtomicU64::new(0),
        })
    }

    fn record(&self, index: u64, fault: HeadFault) {
        self.fault.store(fault as u8, Ordering::Relaxed);
        self.first_refused.fetch_min(index, Ordering::Release);
    }

    /// Called by the handler once per request, before anything else: why
    /// this request (or one before it) is refused, if it is.
    ///
    /// HTTP/1 requests of a connection are handled one after the other, so
    /// the count needs no read-modify-write; on HTTP/2 (concurrent requests)
    /// the count may be off, but nothing is ever recorded there.
    pub fn take_request_refusal(&self) -> Option<HeadFault> {
        let index = self.taken.load(Ordering::Relaxed);
        self.taken.store(index.wrapping_add(1), Ordering::Relaxed);
        (index >= self.first_refused.load(Ordering::Acquire)).then(|| {
            if self.fault.load(Ordering::Relaxed) == HeadFault::BareLf as u8 {
                HeadFault::BareLf
            } else {
                HeadFault::BothLengths
            }
        })
    }
}

/// The client socket, with a [`FramingScanner`] watching what is read.
pub struct H1Guard<T> {
    io: T,
    scanner: FramingScanner,
    alarm: Arc<FramingAlarm>,
}

impl<T> H1Guard<T> {
    /// `max_head`: the largest request head hyper accepts (its read buffer
    /// limit); past that the scanner gives up, as hyper answers 431.
    pub fn new(io: T, max_head: usize, alarm: Arc<FramingAlarm>) -> Self {
        H1Guard {
            io,
            scanner: FramingScanner::new(max_head),
            alarm,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H1Guard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if !this.scanner.is_passthrough() {
            if let Some((index, fault)) = this.scanner.observe(&buf.filled()[before..]) {
                this.alarm.record(index, fault);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H1Guard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where the scanner is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or inside a request head.
    Head,
    /// This many `Content-Length` body bytes still to come (> 0).
    Length(u64),
    /// Inside a chunked body.
    Chunked,
    /// Not following the stream any more.
    Passthrough,
}

/// Follows HTTP/1 request framing over the bytes of one connection.
#[derive(Debug)]
pub struct FramingScanner {
    state: State,
    /// The chunked body being followed (in `State::Chunked`).
    chunked: ChunkedScanner,
    /// The start of a head split across reads (from its first non-empty
    /// line). Empty otherwise; its allocation is kept while small.
    head: Vec<u8>,
    /// An empty line's CR ended the last read; its LF must come next.
    pending_cr: bool,
    /// Request heads seen so far (the index of the next one).
    heads: u64,
    max_head: usize,
    /// Nothing read yet (for the HTTP/2 preface check).
    fresh: bool,
}

/// The framing of one parsed request head.
enum Framing {
    Length(u64),
    Chunked,
    /// A head the handler must refuse.
    Refused(HeadFault),
}

enum Parsed {
    Complete(usize, Framing),
    Partial,
    /// hyper refuses this head (or it is not HTTP/1 at all).
    Invalid,
}

/// A split head buffer larger than this is freed once the head is done.
const KEEP_HEAD_BUFFER: usize = 4096;

impl FramingScanner {
    pub fn new(max_head: usize) -> Self {
        FramingScanner {
            state: State::Head,
            chunked: ChunkedScanner::default(),
            head: Vec::new(),
            pending_cr: false,
            heads: 0,
            max_head,
            fresh: true,
        }
    }

    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Request heads completed so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    fn give_up(&mut self) {
        self.state = State::Passthrough;
        self.head = Vec::new();
        self.pending_cr = false;
    }

    /// Feed the next bytes read from the client. Returns the index of a head
    /// to refuse (both `Content-Length` and `Transfer-Encoding`, or a bare
    /// LF), and why, if this read completed one (the scanner then stops).
    pub fn observe(&mut self, mut data: &[u8]) -> Option<(u64, HeadFault)> {
        if self.fresh && !data.is_empty() {
            self.fresh = false;
            // The HTTP/2 prior-knowledge preface normally comes in the first
            // read (hyper-util reads up to its 24 bytes to detect it); split
            // further, its `HTTP/2.0` fails to parse as a head all the same.
            if data.starts_with(b"PRI * HTTP/2.0") {
                self.give_up();
                return None;
            }
        }
        while !data.is_empty() {
            match self.state {
                State::Passthrough => return None,
                State::Length(left) => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Length(left - n)
                    };
                }
                State::Chunked => data = self.chunked(data),
                State::Head => match self.head_bytes(data) {
                    Ok(rest) => data = rest,
                    Err(refused) => return Some(refused),
                },
            }
        }
        None
    }

    /// Bytes in `State::Head`: returns what follows the head (or nothing if
    /// the head is not complete yet), or the index of an ambiguous head.
    fn head_bytes<'a>(&mut self, mut data: &'a [u8]) -> Result<&'a [u8], (u64, HeadFault)> {
        if self.head.is_empty() {
            // Empty lines before the request line, which httparse skips
            // (CRLF or a bare LF; a bare CR is an error).
            if self.pending_cr {
                if data[0] != b'\n' {
                    self.give_up();
                    return Ok(&[]);
                }
                self.pending_cr = false;
                data = &data[1..];
            }
            loop {
                match data {
                    [b'\n', rest @ ..] | [b'\r', b'\n', rest @ ..] => data = rest,
                    [b'\r'] => {
                        self.pending_cr = true;
                        return Ok(&[]);
                    }
                    [b'\r', ..] => {
                        self.give_up();
                        return Ok(&[]);
                    }
                    _ => break,
                }
            }
            if data.is_empty() {
                return Ok(data);
            }
            // The common case: the whole head is in this read.
            match parse_head(data) {
                Parsed::Complete(len, framing) if len <= self.max_head => {
                    self.start_body(framing, &data[len..])
                }
                Parsed::Partial if data.len() < self.max_head => {
                    if self.head.capacity() == 0 {
                        self.head.reserve(data.len().max(1024));
                    }
                    self.head.extend_from_slice(data);
                    Ok(&[])
                }
                _ => {
                    self.give_up();
                    Ok(&[])
                }
            }
        } else {
            // A head split across reads. From its first non-empty line, the
            // first empty line ends it, so parse once that has arrived.
            let Some(end) = head_end(&self.head, data) else {
                if self.head.len() + data.len() >= self.max_head {
                    self.give_up();
                } else {
                    self.head.extend_from_slice(data);
                }
                return Ok(&[]);
            };
            if self.head.len() + end > self.max_head {
                self.give_up();
                return Ok(&[]);
            }
            self.head.extend_from_slice(&data[..end]);
            match parse_head(&self.head) {
                Parsed::Complete(len, framing) if len == self.head.len() => {
                    if self.head.capacity() > KEEP_HEAD_BUFFER {
                        self.head = Vec::new();
                    } else {
                        self.head.clear();
                    }
                    self.start_body(framing, &data[end..])
                }
                _ => {
                    self.give_up();
                    Ok(&[])
                }
            }
        }
    }

    fn start_body<'a>(
        &mut self,
        framing: Framing,
        rest: &'a [u8],
    ) -> Result<&'a [u8], (u64, HeadFault)> {
        let index = self.heads;
        self.heads += 1;
        match framing {
            Framing::Length(0) => self.state = State::Head,
            Framing::Length(n) => self.state = State::Length(n),
            Framing::Chunked => {
                self.chunked = ChunkedScanner::default();
                self.state = State::Chunked;
            }
            Framing::Refused(fault) => {
                // The handler refuses it and the connection closes after
                // the answer: nothing more to follow.
                self.give_up();
                return Err((index, fault));
            }
        }
        Ok(rest)
    }

    /// Chunked body bytes, as hyper's decoder reads them. Returns what
    /// follows the body, or nothing if it has not ended yet.
    fn chunked<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        match self.chunked.feed(data) {
            ChunkedEnd::More => &[],
            ChunkedEnd::At(end) => {
                self.state = State::Head;
                &data[end..]
            }
            ChunkedEnd::Invalid => {
                // hyper's decoder refuses this byte: it fails the body
                // and reads no further request from this connection.
                self.give_up();
                &[]
            }
        }
    }
}

/// Where the first empty line ends in `head` + `data` (an offset into
/// `data`, past its LF), looking only at lines that end in `data`.
/// `head` holds the start of a head from its first non-empty line, so the
/// first empty line is the end of the head.
fn head_end(head: &[u8], data: &[u8]) -> Option<usize> {
    // The byte `back` positions before data[i], reaching into `head`.
    let before = |i: usize, back: usize| -> Option<u8> {
        if i >= back {
            Some(data[i - back])
        } else {
            head.len()
                .checked_sub(back - i)
                .and_then(|j| head.get(j).copied())
        }
    };
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n'
            && (before(i, 1) == Some(b'\n')
                || (before(i, 1) == Some(b'\r') && before(i, 2) == Some(b'\n')))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Parse a request head as hyper does (httparse with hyper's default
/// settings and header count), and read its framing as hyper's
/// `Server::parse` does.
fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    if !head_lines_end_in_crlf(buf, len, &req) {
        return Parsed::Complete(len, Framing::Refused(HeadFault::BareLf));
    }
    let http_11 = req.version == Some(1);
    let mut te = false;
    let mut te_chunked = false;
    let mut cl = false;
    let mut length: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http_11 {
                // hyper: HTTP/1.0 cannot have Transfer-Encoding -> 400.
                return Parsed::Invalid;
            }
            te = true;
            // The last Transfer-Encoding line decides.
            te_chunked = ends_with_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl = true;
            if te {
                continue;
            }
            let Some(n) = decimal(h.value) else {
                return Parsed::Invalid;
            };
            match length {
                Some(prev) if prev != n => return Parsed::Invalid,
                _ => length = Some(n),
            }
        }
    }
    let framing = if te && !te_chunked {
        return Parsed::Invalid;
    } else if te && cl {
        Framing::Refused(HeadFault::BothLengths)
    } else if te {
        Framing::Chunked
    } else {
        Framing::Length(length.unwrap_or(0))
    };
    Parsed::Complete(len, framing)
}

/// True when every line of the request head `req` that httparse parsed
/// from `buf` (`len` bytes, up to its empty line) ends in CRLF. httparse,
/// hyper and nginx also take a bare LF as a line ending; a server behind
/// the gateway that does not would read another head. Used by this scanner
/// and by `proxy::direct`.
pub(crate) fn head_lines_end_in_crlf(
    buf: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
) -> bool {
    let base = buf.as_ptr() as usize;
    line_ends_are_crlf(
        &buf[..len],
        req.headers.iter().map(|h| h.name.as_ptr() as usize - base),
    )
}

/// `head_lines_end_in_crlf` on offsets: `name_starts` are where each header
/// name starts in `head`. httparse puts no CR or LF inside a line, so the
/// bytes before each header name end the line before it, and the head's
/// last four bytes end its last line and the empty line. (Empty lines
/// before the request line, which httparse skips, are not looked at.)
fn line_ends_are_crlf(head: &[u8], name_starts: impl IntoIterator<Item = usize>) -> bool {
    head.ends_with(b"\r\n\r\n")
        && name_starts
            .into_iter()
            .all(|at| at >= 2 && &head[at - 2..at] == b"\r\n")
}

/// hyper's `is_chunked_`: the value is visible ASCII and its last
/// comma-separated coding is `chunked`.
fn ends_with_chunked(value: &[u8]) -> bool {
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return false;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// hyper's `Content-Length` parse: ASCII digits only, no overflow.
pub(crate) fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    /// Feed `stream` in reads of `sizes` (cycled); the reported index.
    fn scan_in(stream: &[u8], sizes: &[usize]) -> (Option<u64>, FramingScanner) {
        let (found, s) = scan_in_why(stream, sizes);
        (found.map(|(index, _)| index), s)
    }

    /// Feed `stream` in reads of `sizes` (cycled); the reported index and
    /// fault.
    fn scan_in_why(stream: &[u8], sizes: &[usize]) -> (Option<(u64, HeadFault)>, FramingScanner) {
        let mut s = FramingScanner::new(MAX);
        let mut found = None;
        let mut rest = stream;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            let (now, later) = rest.split_at(n);
            if let Some(idx) = s.observe(now) {
                assert!(found.is_none(), "reported twice");
                found = Some(idx);
            }
            rest = later;
        }
        (found, s)
    }

    fn scan(stream: &[u8]) -> (Option<u64>, FramingScanner) {
        scan_in(stream, &[usize::MAX])
    }

    /// The same answer whatever the read boundaries: one split anywhere,
    /// byte by byte, and a few irregular patterns.
    fn scan_every_way(stream: &[u8]) -> (Option<u64>, u64, bool) {
        let (found, _) = scan_every_way_why(stream);
        found
    }

    /// `scan_every_way`, and the fault reported.
    fn scan_every_way_why(stream: &[u8]) -> ((Option<u64>, u64, bool), Option<HeadFault>) {
        let (want, s) = scan_in_why(stream, &[usize::MAX]);
        let fault = want.map(|(_, why)| why);
        let expect = (want, s.heads(), s.is_passthrough());
        for cut in 1..stream.len() {
            let mut s = FramingScanner::new(MAX);
            let a = s.observe(&stream[..cut]);
            let b = s.observe(&stream[cut..]);
            assert_eq!(
                (a.or(b), s.heads(), s.is_passthrough()),
                expect,
                "split at {cut}"
            );
        }
        for sizes in [&[1][..], &[2], &[3, 7], &[24, 5], &[5, 1, 13]] {
            let (got, s) = scan_in_why(stream, sizes);
            assert_eq!(
                (got, s.heads(), s.is_passthrough()),
                expect,
                "reads {sizes:?}"
            );
        }
        (
            (expect.0.map(|(index, _)| index), expect.1, expect.2),
            fault,
        )
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    const CL_TE: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    const TE_CL: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn both_framing_headers_are_reported_in_either_order() {
        assert_eq!(scan_every_way(CL_TE), (Some(0), 1, true));
        assert_eq!(scan_every_way(TE_CL), (Some(0), 1, true));
        // Lower-case, several CL lines, TE with codings before chunked.
        let odd = b"PUT / HTTP/1.1\r\ncontent-length: 3\r\nCONTENT-LENGTH: 3\r\ntransfer-encoding: gzip ,  Chunked \r\n\r\n";
        assert_eq!(scan(odd).0, Some(0));
    }

    #[test]
    fn the_index_counts_request_heads_on_the_connection() {
        let stream = cat(&[GET, GET, CL_TE, GET]);
        assert_eq!(scan_every_way(&stream), (Some(2), 3, true));
        assert_eq!(scan(GET).0, None);
        assert_eq!(scan(&cat(&[GET, GET])).1.heads(), 2);
    }

    #[test]
    fn content_length_bodies_are_skipped_whatever_they_hold() {
        // The body looks like a CL+TE head; it is body, not a request.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = cat(&[head.as_bytes(), body, GET, CL_TE]);
        assert_eq!(scan_every_way(&stream), (Some(2), 3, true));
        let stream = cat(&[head.as_bytes(), body, GET]);
        assert_eq!(scan_every_way(&stream), (None, 2, false));
        assert_eq!(scan(&stream).1.state, State::Head);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_are_followed() {
        let fake =
            b"\r\n\r\nGET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunked = cat(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            format!("{:X} ; name=\"v;a\" ;x\r\n", fake.len()).as_bytes(),
            fake,
            b"\r\n3;ext\r\nabc\r\n",
            format!("{:x}\t\r\n", fake.len()).as_bytes(),
            fake,
            b"\r\n0;last=1\r\nX-Trailer: a\r\nX-Other: Content-Length: 5\r\n\r\n",
        ]);
        let stream = cat(&[&chunked, GET, &chunked, CL_TE]);
        assert_eq!(scan_every_way(&stream), (Some(3), 4, true));
        // No trailers, then a plain request.
        let stream = cat(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            GET,
        ]);
        assert_eq!(scan_every_way(&stream), (None, 2, false));
    }

    #[test]
    fn a_malformed_chunked_body_stops_the_scan() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\r\r",
            b"0\r\nX-T: a\rb\r\n\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            let stream = cat(&[
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                bad,
                CL_TE,
            ]);
            let (found, s) = scan(&stream);
            assert_eq!(found, None, "{:?}", String::from_utf8_lossy(bad));
            assert!(s.is_passthrough(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_hyper_refuses_stop_the_scan() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
            b"\rGET / HTTP/1.1\r\n\r\n",
        ] {
            let (found, s) = scan(&cat(&[bad, CL_TE]));
            assert_eq!(found, None, "{:?}", String::from_utf8_lossy(bad));
            assert!(s.is_passthrough(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_oversized_head_stops_the_scan() {
        let big = format!(
            "POST / HTTP/1.1\r\nX-Big: {}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "a".repeat(MAX)
        );
        assert_eq!(scan(big.as_bytes()).0, None);
        assert_eq!(scan_in(big.as_bytes(), &[24, 1000]).0, None);
        assert!(scan_in(big.as_bytes(), &[24, 1000]).1.is_passthrough());
    }

    #[test]
    fn empty_lines_before_a_head_are_skipped() {
        let stream = cat(&[GET, b"\r\n\n\r\n", CL_TE]);
        assert_eq!(scan_every_way(&stream), (Some(1), 2, true));
    }

    #[test]
    fn http2_prior_knowledge_is_not_followed() {
        let stream = cat(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", CL_TE]);
        for sizes in [&[24, 4096][..], &[1]] {
            let (found, s) = scan_in(&stream, sizes);
            assert_eq!(found, None, "{sizes:?}");
            assert!(s.is_passthrough(), "{sizes:?}");
        }
    }

    #[test]
    fn tunnel_bytes_after_an_upgrade_stop_the_scan() {
        let upgrade =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        // A websocket frame: not a request head.
        let (found, s) = scan(&cat(&[upgrade, b"\x81\x85abcd", CL_TE]));
        assert_eq!((found, s.heads(), s.is_passthrough()), (None, 1, true));
        // A declined upgrade: what follows is still HTTP and still checked.
        assert_eq!(scan_every_way(&cat(&[upgrade, CL_TE])), (Some(1), 2, true));
        // CONNECT, then TLS bytes.
        let (found, s) = scan(&cat(&[
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01",
        ]));
        assert_eq!((found, s.is_passthrough()), (None, true));
    }

    #[test]
    fn whole_heads_are_parsed_in_place() {
        let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let mut s = FramingScanner::new(MAX);
        for _ in 0..100 {
            assert_eq!(s.observe(GET), None);
            assert_eq!(s.observe(post), None);
        }
        assert_eq!(s.heads(), 200);
        assert_eq!(s.head.capacity(), 0, "no copy of a head read whole");
        // A split head is copied; a large buffer is not kept afterwards.
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(8000));
        let (a, b) = big.as_bytes().split_at(24);
        assert_eq!(s.observe(a), None);
        assert_eq!(s.observe(b), None);
        assert_eq!(s.head.capacity(), 0);
        assert_eq!(s.heads(), 201);
    }

    #[test]
    fn the_alarm_refuses_from_the_recorded_request_on() {
        for fault in [HeadFault::BothLengths, HeadFault::BareLf] {
            let alarm = FramingAlarm::new();
            assert_eq!(alarm.take_request_refusal(), None);
            alarm.record(2, fault);
            assert_eq!(alarm.take_request_refusal(), None);
            assert_eq!(alarm.take_request_refusal(), Some(fault));
            assert_eq!(alarm.take_request_refusal(), Some(fault));
        }
    }

    #[test]
    fn a_head_with_a_bare_lf_line_ending_is_reported_wherever_it_is() {
        let bare = [
            &b"GET /a HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET /a HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\n\n",
            b"GET /a HTTP/1.1\n\n",
            b"GET /a HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n",
        ];
        for head in bare {
            let what = String::from_utf8_lossy(head);
            // First on the connection, and after two good requests.
            assert_eq!(
                scan_every_way_why(head),
                ((Some(0), 1, true), Some(HeadFault::BareLf)),
                "{what:?}"
            );
            let stream = cat(&[GET, GET, head]);
            assert_eq!(
                scan_every_way_why(&stream),
                ((Some(2), 3, true), Some(HeadFault::BareLf)),
                "{what:?}"
            );
        }
        // Empty lines before the request line (skipped, as hyper does) and
        // CRLF everywhere are fine; so is a bare LF in a body.
        let fine = cat(&[
            b"\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\na\nb",
            GET,
        ]);
        assert_eq!(scan_every_way_why(&fine), ((None, 3, false), None));
        assert!(line_ends_are_crlf(GET, [17]));
        assert!(!line_ends_are_crlf(
            b"GET /a HTTP/1.1\nHost: x\r\n\r\n",
            [16]
        ));
    }
}
