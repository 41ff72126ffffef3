//! A scanner for HTTP/1 chunked bodies: follows the framing byte by byte,
//! as hyper's decoder reads it (`proto::h1::decode::ChunkedState`: size
//! with optional whitespace and extensions, data, CRLF, then trailers), to
//! find where a body ends without decoding it.
//!
//! Used by `h1_guard` (request bodies, to find the next request head) and
//! by `direct` (response bodies passed through to the client verbatim, to
//! know when the upstream connection is free again).

/// hyper's chunked decoder states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// Where a chunked body ends, or that its framing is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedEnd {
    /// All of the bytes fed so far belong to the body; more are to come.
    More,
    /// The body ended this many bytes into the last slice fed.
    At(usize),
    /// hyper's decoder would refuse this byte: the body is broken.
    Invalid,
}

/// Follows one chunked body. Feed it consecutive slices of the body.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: Chunk,
    /// Chunk size being read, then the chunk bytes left to skip.
    size: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: Chunk::Start,
            size: 0,
        }
    }
}

impl ChunkedScanner {
    /// Feed the next bytes of the body.
    pub fn feed(&mut self, data: &[u8]) -> ChunkedEnd {
        use Chunk::*;
        let mut at = 0;
        while at < data.len() {
            if self.state == Body {
                let n = self.size.min((data.len() - at) as u64);
                at += n as usize;
                self.size -= n;
                if self.size == 0 {
                    self.state = BodyCr;
                }
                continue;
            }
            let b = data[at];
            at += 1;
            let next = match (self.state, b) {
                (Start, _) => hex(b).map(|v| {
                    self.size = v;
                    Size
                }),
                (Size, _) if hex(b).is_some() => self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(hex(b).unwrap_or(0)))
                    .map(|v| {
                        self.size = v;
                        Size
                    }),
                (Size | SizeLws, b'\t' | b' ') => Some(SizeLws),
                (Size | SizeLws, b';') => Some(Extension),
                (Size | SizeLws | Extension, b'\r') => Some(SizeLf),
                (Extension, b'\n') => None,
                (Extension, _) => Some(Extension),
                (SizeLf, b'\n') if self.size == 0 => Some(EndCr),
                (SizeLf, b'\n') => Some(Body),
                (BodyCr, b'\r') => Some(BodyLf),
                (BodyLf, b'\n') => Some(Start),
                (Trailer, b'\r') => Some(TrailerLf),
                (Trailer, _) => Some(Trailer),
                (TrailerLf, b'\n') => Some(EndCr),
                (EndCr, b'\r') => Some(EndLf),
                (EndCr, _) => Some(Trailer),
                (EndLf, b'\n') => {
                    *self = ChunkedScanner::default();
                    return ChunkedEnd::At(at);
                }
                _ => None,
            };
            match next {
                Some(n) => self.state = n,
                None => return ChunkedEnd::Invalid,
            }
        }
        ChunkedEnd::More
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_body_split_anywhere() {
        let body: &[u8] = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for cut in 0..body.len() {
            let mut s = ChunkedScanner::default();
            let (a, b) = body.split_at(cut);
            let found = match s.feed(a) {
                ChunkedEnd::At(i) => i,
                ChunkedEnd::More => match s.feed(b) {
                    ChunkedEnd::At(i) => cut + i,
                    other => panic!("cut {cut}: {other:?}"),
                },
                ChunkedEnd::Invalid => panic!("cut {cut}: invalid"),
            };
            assert_eq!(found, end, "cut at {cut}");
        }
    }

    #[test]
    fn refuses_broken_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"5\nhello",
            b"ffffffffffffffffff\r\n",
            b"0;x\n",
        ] {
            let mut s = ChunkedScanner::default();
            assert_eq!(
                s.feed(bad),
                ChunkedEnd::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
