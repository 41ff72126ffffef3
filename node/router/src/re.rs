//! Regex compilation for path and header conditions.
//!
//! Both are built with `regex-automata`'s meta engine configured for what the
//! router needs and nothing more: only the overall match (no capture
//! groups), no literal prefilter, no capture engines (one-pass,
//! backtracker) and no eagerly determinized DFA (the lazy DFA is used). That keeps a build in the tens of microseconds instead of
//! hundreds, which matters with hundreds of regex routes.
//!
//! Patterns are first compiled in ASCII mode (`\d`, `\w`, `\s`, `\b`, `.`
//! and case folding are ASCII / byte-wise). The router matches normalized
//! paths, which [`crate::normalize_path`] makes pure ASCII, and on ASCII
//! input ASCII mode gives the same matches as Unicode mode (Kong's
//! `regex` crate default) while compiling far faster. A pattern that cannot
//! be compiled in ASCII mode (e.g. it uses `\p{Greek}`) is compiled in
//! Unicode mode instead.

use regex_automata::meta::{BuildError, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;

fn build(src: &str, case_insensitive: bool) -> Result<Regex, BuildError> {
    let config = Regex::config()
        .which_captures(WhichCaptures::Implicit)
        .auto_prefilter(false)
        .onepass(false)
        .backtrack(false)
        // A fully compiled DFA searches no faster here than the lazy one
        // once warm, and determinizing it up front dominated build time.
        .dfa(false);
    let ascii = syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(case_insensitive);
    Regex::builder()
        .configure(config.clone())
        .syntax(ascii)
        .build(src)
        .or_else(|_| {
            Regex::builder()
                .configure(config)
                .syntax(syntax::Config::new().case_insensitive(case_insensitive))
                .build(src)
        })
}

/// A path regex (the pattern after `~`); search it with an anchored
/// `Input` and `search_half` for the end of the leftmost-first match.
pub(crate) fn path_regex(src: &str) -> Result<Regex, BuildError> {
    build(src, false)
}

/// A `~*` header value regex (the pattern after `~*`): case-insensitive,
/// unanchored.
pub(crate) fn header_regex(src: &str) -> Result<Regex, BuildError> {
    build(src, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::{Anchored, Input};

    fn end(re: &Regex, hay: &str) -> Option<usize> {
        re.search_half(&Input::new(hay).anchored(Anchored::Yes))
            .map(|m| m.offset())
    }

    #[test]
    fn path_regexes_are_anchored_leftmost_first() {
        let re = path_regex(r"/users/\d+").unwrap();
        assert_eq!(end(&re, "/users/123/x"), Some(10));
        assert_eq!(end(&re, "/x/users/123"), None);
        let re = path_regex(r"/a|/ab").unwrap();
        assert_eq!(end(&re, "/ab"), Some(2));
        let re = path_regex(r"/a(?i)B").unwrap();
        assert_eq!(end(&re, "/ab"), Some(3));
    }

    #[test]
    fn unicode_only_patterns_fall_back() {
        let re = path_regex(r"/\p{Greek}+").unwrap();
        assert_eq!(end(&re, "/αβ/x"), Some(5));
        assert!(path_regex(r"/(unclosed").is_err());
    }

    #[test]
    fn header_regexes_ignore_ascii_case_and_are_unanchored() {
        let re = header_regex(r"mobile|android").unwrap();
        assert!(re.is_match(b"Mozilla (Linux; ANDROID 14)".as_slice()));
        assert!(!re.is_match(b"desktop".as_slice()));
    }
}
