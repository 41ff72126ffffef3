//! Request-path normalization.
//!
//! The proxy matches routes against, and forwards, the output of
//! [`normalize_path`], so a path cannot reach a route's upstream in a form
//! that a more specific route would have caught (`/public/../admin` is
//! matched and forwarded as `/admin`). Prefix paths in routes go through the
//! same function when the router is built.
//!
//! What it does, in order:
//! 1. rejects a path that does not start with `/`, a raw NUL byte, `%00`,
//!    and any `%` not followed by two hex digits;
//! 2. decodes `%XX` when `XX` is an RFC 3986 *unreserved* character
//!    (`A-Z a-z 0-9 - . _ ~`), keeps every other escape but upper-cases its
//!    hex digits (`%2f` -> `%2F`), and percent-encodes raw bytes that may not
//!    appear in a request path (space, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`,
//!    `|`, `}`, control bytes, non-ASCII);
//! 3. removes `.` and `..` segments (RFC 3986 section 5.2.4; `..` never
//!    climbs above `/`), after step 2, so `%2e%2e` counts as `..`;
//! 4. merges runs of `/` into one, as Kong does (`normalize(uri, true)`).
//!
//! Kong's `kong.tools.uri.normalize` does steps 3 and 4 the same way, but in
//! step 2 it also decodes escapes of characters that are neither reserved nor
//! unreserved (`%20` becomes a space, `%C3%A9` becomes `é`) for matching, and
//! re-escapes them when forwarding. We keep those escaped throughout; the
//! forwarded path is the same, but a regex route sees `%20` where Kong's sees
//! a space. Kong also does not reject `%00` or malformed escapes; we do (the
//! proxy answers 400).

use std::borrow::Cow;

/// Why a request path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("malformed percent-encoding at byte {at}")]
    BadPercent { at: usize },
    #[error("NUL byte (raw or %00) at byte {at}")]
    Nul { at: usize },
}

/// Normalize a request path (no query string). Returns the input borrowed
/// when it is already in normal form, so `matches!(normalize_path(p),
/// Ok(Cow::Borrowed(_)))` tells whether `p` is normalized.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut slow = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            0 => return Err(PathError::Nul { at: i }),
            b'%' => slow = true,
            b'/' => {
                if matches!(b.get(i + 1), Some(b'/') | Some(b'.')) {
                    slow = true;
                }
            }
            c if !is_kept(c) => slow = true,
            _ => {}
        }
    }
    if !slow {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode(b)?;
    let out = remove_dot_segments(&decoded);
    if out == raw {
        Ok(Cow::Borrowed(raw))
    } else {
        Ok(Cow::Owned(out))
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Bytes kept as they are (Kong's `escape` leaves the same set alone).
fn is_kept(c: u8) -> bool {
    is_unreserved(c) || b"!$&'()*+,;=:@/[]?#".contains(&c)
}

/// Step 1 and 2. The output is ASCII.
fn decode(b: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(PathError::BadPercent { at: i });
            };
            let v = h * 16 + l;
            if v == 0 {
                return Err(PathError::Nul { at: i });
            }
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(h)]));
                out.push(char::from(HEX[usize::from(l)]));
            }
            i += 3;
        } else if c == 0 {
            return Err(PathError::Nul { at: i });
        } else if is_kept(c) {
            out.push(char::from(c));
            i += 1;
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0xf)]));
            i += 1;
        }
    }
    Ok(out)
}

/// Steps 3 and 4 on a path starting with `/`.
fn remove_dot_segments(p: &str) -> String {
    let body = p.strip_prefix('/').unwrap_or(p);
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut segs: Vec<&str> = Vec::with_capacity(parts.len());
    let mut trailing_slash = false;
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "." | "" => trailing_slash = i == last,
            ".." => {
                segs.pop();
                trailing_slash = i == last;
            }
            s => {
                segs.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if segs.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p).unwrap().into_owned()
    }

    #[test]
    fn already_normal_is_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/x%2Fy", "/~user/@x:y"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments() {
        // RFC 3986 5.2.4 examples, adapted to absolute paths.
        assert_eq!(n("/a/b/c/./../../g"), "/a/g");
        assert_eq!(n("/mid/content=5/../6"), "/mid/6");
        assert_eq!(n("/foo/../admin"), "/admin");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../../x"), "/x");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/./"), "/");
        assert_eq!(n("/a/..b/...c"), "/a/..b/...c");
    }

    #[test]
    fn slashes_are_merged_like_kong() {
        assert_eq!(n("//"), "/");
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("/a//b///c//"), "/a/b/c/");
    }

    #[test]
    fn unreserved_escapes_are_decoded_before_dot_removal() {
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%7Euser"), "/~user");
        assert_eq!(n("/public/%2e%2E/admin"), "/admin");
        assert_eq!(n("/public/.%2e/admin"), "/admin");
    }

    #[test]
    fn other_escapes_are_kept_with_upper_case_hex() {
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%2F..%2Fb"), "/a%2F..%2Fb");
        assert_eq!(n("/x%20y"), "/x%20y");
        assert_eq!(n("/caf%c3%a9"), "/caf%C3%A9");
    }

    #[test]
    fn raw_unsafe_bytes_are_encoded() {
        assert_eq!(n("/a b"), "/a%20b");
        assert_eq!(n("/café"), "/caf%C3%A9");
        assert_eq!(n("/{x}|\"y\""), "/%7Bx%7D%7C%22y%22");
    }

    #[test]
    fn rejects() {
        assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/a%"), Err(PathError::BadPercent { at: 2 }));
        assert_eq!(normalize_path("/a%4"), Err(PathError::BadPercent { at: 2 }));
        assert_eq!(
            normalize_path("/a%zz"),
            Err(PathError::BadPercent { at: 2 })
        );
        assert_eq!(normalize_path("/a%00b"), Err(PathError::Nul { at: 2 }));
        assert_eq!(normalize_path("/a\0b"), Err(PathError::Nul { at: 2 }));
    }

    #[test]
    fn idempotent() {
        for p in [
            "/a/../b/./c//d/%2e%2E/%7e/%2f/ x",
            "/..%2F..%2f",
            "/%41%42/..",
            "/a/b/c/../../../../..",
        ] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
            assert!(matches!(normalize_path(&once), Ok(Cow::Borrowed(_))));
        }
    }
}
