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

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::meta::Regex;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use std::collections::HashMap;
use std::sync::Arc;

use crate::literal::split_literal;

/// Above these sizes a path regex keeps the lazy DFA instead of a fully
/// compiled one (bounds build time and memory for pathological patterns).
const DENSE_DFA_LIMIT: usize = 256 << 10;
const DETERMINIZE_LIMIT: usize = 1 << 20;

fn ascii_syntax(case_insensitive: bool) -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(case_insensitive)
}

/// Errors are the builder's message (its error type is large).
fn build_meta(src: &str, case_insensitive: bool) -> Result<Regex, String> {
    let config = Regex::config()
        .which_captures(WhichCaptures::Implicit)
        .auto_prefilter(false)
        .onepass(false)
        .backtrack(false)
        // Determinizing a full DFA up front dominated build time; the lazy
        // DFA searches as fast once warm.
        .dfa(false);
    let ascii = Regex::builder()
        .configure(config.clone())
        .syntax(ascii_syntax(case_insensitive))
        .build(src);
    if let Ok(r) = ascii {
        return Ok(r);
    }
    Regex::builder()
        .configure(config)
        .syntax(syntax::Config::new().case_insensitive(case_insensitive))
        .build(src)
        .map_err(|e| e.to_string())
}

/// A compiled path regex `~pattern`, split as `literal · rest` (see
/// `literal::split_literal`): the router only runs it on paths that start
/// with `literal` (its trie key starts with it), so only `rest` is compiled
/// and searched, from the end of `literal`. `rest` is a small fully
/// compiled, anchored-only DFA when it allows (nearly always: one table load
/// per byte, no per-thread cache), else a lazy-DFA meta regex.
#[derive(Debug)]
pub(crate) struct PathRegex {
    skip: usize,
    /// Shared between patterns with the same rest (`/a/\d+` and `/b/\d+`).
    engine: Arc<Engine>,
}

// Each engine sits alone in an `Arc`, so the small variants' padding costs
// nothing worth a second indirection on the search path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Engine {
    /// The whole pattern is its literal.
    Literal,
    Dense(dense::DFA<Vec<u32>>),
    Meta(Regex),
}

/// Compiled rests by pattern text, for one router build.
#[derive(Debug, Default)]
pub(crate) struct RegexCache {
    by_rest: HashMap<String, Arc<Engine>>,
}

impl PathRegex {
    /// End of the leftmost-first match of `^(?:pattern)` in `path`, which
    /// the caller guarantees starts with the pattern's literal prefix.
    #[inline]
    pub(crate) fn match_end(&self, path: &str) -> Option<usize> {
        if path.len() < self.skip {
            return None;
        }
        let mut input = Input::new(path).anchored(Anchored::Yes);
        input.set_start(self.skip);
        match &*self.engine {
            Engine::Literal => Some(self.skip),
            // ASCII-mode DFAs have no quit bytes, so the search cannot fail.
            Engine::Dense(d) => d.try_search_fwd(&input).ok().flatten().map(|m| m.offset()),
            Engine::Meta(r) => r.search_half(&input).map(|m| m.offset()),
        }
    }
}

/// Compile a path regex (the pattern after `~`).
pub(crate) fn path_regex(src: &str, cache: &mut RegexCache) -> Result<PathRegex, String> {
    let parts = split_literal(src).filter(|_| regex_syntax::Parser::new().parse(src).is_ok());
    let Some((lit, rest)) = parts else {
        // Not a valid pattern: the meta builder, which uses the same parser,
        // reports why (and would match the whole pattern if it accepted it).
        return build_meta(src, false).map(|r| PathRegex {
            skip: 0,
            engine: Arc::new(Engine::Meta(r)),
        });
    };
    if let Some(engine) = cache.by_rest.get(&rest) {
        return Ok(PathRegex {
            skip: lit.len(),
            engine: Arc::clone(engine),
        });
    }
    let engine = if rest.is_empty() {
        Engine::Literal
    } else {
        let dense = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DENSE_DFA_LIMIT))
                    .determinize_size_limit(Some(DETERMINIZE_LIMIT)),
            )
            .syntax(ascii_syntax(false))
            .thompson(thompson::Config::new().which_captures(WhichCaptures::None))
            .build(&rest);
        match dense {
            Ok(d) => Engine::Dense(d),
            Err(_) => Engine::Meta(build_meta(&rest, false)?),
        }
    };
    let engine = Arc::new(engine);
    cache.by_rest.insert(rest, Arc::clone(&engine));
    Ok(PathRegex {
        skip: lit.len(),
        engine,
    })
}

/// A `~*` header value regex (the pattern after `~*`): case-insensitive,
/// unanchored.
pub(crate) fn header_regex(src: &str) -> Result<Regex, String> {
    build_meta(src, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile `p` and match `hay` as the router does: only paths that
    /// start with the literal prefix reach `match_end`.
    fn end(p: &str, hay: &str) -> Option<usize> {
        let re = path_regex(p, &mut RegexCache::default()).unwrap();
        let (lit, _) = split_literal(p).unwrap();
        hay.starts_with(&lit).then(|| re.match_end(hay)).flatten()
    }

    fn engine(p: &str) -> &'static str {
        match *path_regex(p, &mut RegexCache::default()).unwrap().engine {
            Engine::Literal => "literal",
            Engine::Dense(_) => "dense",
            Engine::Meta(_) => "meta",
        }
    }

    #[test]
    fn path_regexes_are_anchored_leftmost_first() {
        assert_eq!(end(r"/users/\d+", "/users/123/x"), Some(10));
        assert_eq!(end(r"/users/\d+", "/x/users/123"), None);
        assert_eq!(end(r"/a|/ab", "/ab"), Some(2));
        assert_eq!(end(r"/a(?i)B", "/ab"), Some(3));
        assert_eq!(end(r"^/a/b$", "/a/b"), Some(4));
        assert_eq!(end(r"/a/b$", "/a/b/"), None);
        assert_eq!(end(r"/exact", "/exact/x"), Some(6));
        // look-around in the rest sees the literal before it
        assert_eq!(end(r"/ab\b", "/ab/"), Some(3));
        assert_eq!(end(r"/ab\B", "/ab/"), None);
        assert_eq!(end(r"/a^", "/a"), None);
        assert_eq!(end(r"", "/x"), Some(0));
    }

    #[test]
    fn engines() {
        assert_eq!(engine(r"/users/\d+/x$"), "dense");
        assert_eq!(engine(r"/exact"), "literal");
        assert_eq!(engine(r"/(a|b)*a(a|b){20}"), "meta");
        assert_eq!(
            end(r"/(a|b)*a(a|b){20}", &format!("/a{}", "b".repeat(20))),
            Some(22)
        );
    }

    #[test]
    fn rests_are_shared() {
        let mut c = RegexCache::default();
        let a = path_regex(r"/a/\d+$", &mut c).unwrap();
        let b = path_regex(r"/bb/\d+$", &mut c).unwrap();
        assert!(Arc::ptr_eq(&a.engine, &b.engine));
        assert_eq!(a.match_end("/a/12"), Some(5));
        assert_eq!(b.match_end("/bb/12"), Some(6));
        assert_eq!(b.match_end("/bb/12x"), None);
    }

    #[test]
    fn unicode_only_patterns_fall_back() {
        assert_eq!(end(r"/\p{Greek}+", "/αβ/x"), Some(5));
        let mut c = RegexCache::default();
        assert!(path_regex(r"/(unclosed", &mut c).is_err());
        assert!(path_regex(r"/a)(b", &mut c).is_err());
        assert!(path_regex(r"/(?<=a)b", &mut c).is_err());
    }

    #[test]
    fn header_regexes_ignore_ascii_case_and_are_unanchored() {
        let re = header_regex(r"mobile|android").unwrap();
        assert!(re.is_match(b"Mozilla (Linux; ANDROID 14)".as_slice()));
        assert!(!re.is_match(b"desktop".as_slice()));
    }
}
