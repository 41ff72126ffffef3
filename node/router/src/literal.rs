//! The literal prefix of a regex path.
//!
//! A regex path `~re` is compiled as `^(?:re)`. Every path it matches starts
//! with the literal text at the start of `re`, so the router files the regex
//! under that text in its path trie and only runs it for paths that start
//! with it. The prefix is read from `re`'s syntax tree: literals (escaped or
//! not) and zero-width assertions are followed, plain and capture groups are
//! entered, and anything else (a class, `.`, a repetition, an alternation,
//! inline flags such as `(?i)`) ends it. An empty prefix is always correct,
//! only slower.

use regex_syntax::ast::{parse::Parser, print::Printer, AssertionKind, Ast, GroupKind};

/// The literal text every match of `^(?:pattern)` starts with (a safe
/// under-approximation; empty when `pattern` does not parse).
pub(crate) fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    if let Ok(ast) = Parser::new().parse(pattern) {
        collect(&ast, &mut out);
    }
    out
}

/// Split `pattern` into its top-level literal prefix and the rest, as
/// pattern text: `^(?:pattern)` matches `p` anchored iff `p` starts with the
/// prefix and `rest` matches anchored right after it (look-around in `rest`
/// still sees the prefix when searched within the whole path). A leading
/// `^` is dropped (it always holds at the start). Unlike [`literal_prefix`]
/// this does not enter groups. `None` when the pattern does not parse.
pub(crate) fn split_literal(pattern: &str) -> Option<(String, String)> {
    let ast = Parser::new().parse(pattern).ok()?;
    let items: Vec<&Ast> = match &ast {
        Ast::Concat(c) => c.asts.iter().collect(),
        other => vec![other],
    };
    let mut i = 0;
    if let Some(Ast::Assertion(a)) = items.first() {
        if matches!(a.kind, AssertionKind::StartLine | AssertionKind::StartText) {
            i = 1;
        }
    }
    let mut lit = String::new();
    while let Some(Ast::Literal(l)) = items.get(i) {
        lit.push(l.c);
        i += 1;
    }
    let mut rest = String::new();
    for a in &items[i..] {
        Printer::new().print(a, &mut rest).ok()?;
    }
    Some((lit, rest))
}

/// Appends the literal prefix of `ast` to `out`; false when `ast` ended it.
fn collect(ast: &Ast, out: &mut String) -> bool {
    match ast {
        Ast::Empty(_) | Ast::Assertion(_) => true,
        Ast::Literal(l) => {
            out.push(l.c);
            true
        }
        Ast::Concat(c) => c.asts.iter().all(|a| collect(a, out)),
        Ast::Group(g) => match &g.kind {
            GroupKind::CaptureIndex(_) | GroupKind::CaptureName { .. } => collect(&g.ast, out),
            GroupKind::NonCapturing(flags) if flags.items.is_empty() => collect(&g.ast, out),
            GroupKind::NonCapturing(_) => false,
        },
        Ast::Flags(_)
        | Ast::Dot(_)
        | Ast::ClassUnicode(_)
        | Ast::ClassPerl(_)
        | Ast::ClassBracketed(_)
        | Ast::Repetition(_)
        | Ast::Alternation(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(literal_prefix(r"/users/\d+/profile"), "/users/");
        assert_eq!(literal_prefix(r"/route/(fixture)"), "/route/fixture");
        assert_eq!(literal_prefix(r"/r/(?P<id>x)\d"), "/r/x");
        assert_eq!(literal_prefix(r"/r/(?:ab|cd)"), "/r/");
        assert_eq!(literal_prefix(r"^/a/b"), "/a/b");
        assert_eq!(literal_prefix(r"/ab?c"), "/a");
        assert_eq!(literal_prefix(r"/ab*"), "/a");
        assert_eq!(literal_prefix(r"/ab+"), "/a");
        assert_eq!(literal_prefix(r"/ab{2}"), "/a");
        assert_eq!(literal_prefix(r"/a\.b\/c\-d"), "/a.b/c-d");
        assert_eq!(literal_prefix(r"/a\.?b"), "/a");
        assert_eq!(literal_prefix(r"/a\d"), "/a");
        assert_eq!(literal_prefix(r"/a.b"), "/a");
        assert_eq!(literal_prefix(r"/a[bc]"), "/a");
        assert_eq!(literal_prefix(r"/a$"), "/a");
        assert_eq!(literal_prefix(r"/a|/b"), "");
        assert_eq!(literal_prefix(r"(?i)/a"), "");
        assert_eq!(literal_prefix(r"(?i:/a)"), "");
        assert_eq!(literal_prefix(r"/a(?i)b"), "/a");
        assert_eq!(literal_prefix(r""), "");
        assert_eq!(literal_prefix(r"/é+"), "/");
        assert_eq!(literal_prefix(r"(unclosed"), "");
    }

    #[test]
    fn splits() {
        let s = |p: &str| split_literal(p).unwrap();
        assert_eq!(s(r"/users/\d+/x$"), ("/users/".into(), r"\d+/x$".into()));
        assert_eq!(s(r"^/a\.b/(c|d)"), ("/a.b/".into(), "(c|d)".into()));
        assert_eq!(s(r"/ab?"), ("/a".into(), "b?".into()));
        assert_eq!(s(r"/exact"), ("/exact".into(), "".into()));
        assert_eq!(s(r"(?i)/a"), ("".into(), "(?i)/a".into()));
        assert_eq!(s(r"/a|/b"), ("".into(), "/a|/b".into()));
        assert_eq!(s(r"/a(?x) b # c"), ("/a".into(), "(?x)b".into()));
        assert_eq!(s(r"/r/(?P<id>\d+)"), ("/r/".into(), r"(?P<id>\d+)".into()));
        assert_eq!(split_literal("(unclosed"), None);
    }

    #[test]
    fn prefix_is_a_prefix_of_every_match() {
        let cases = [
            (r"/users/\d+/profile", "/users/12/profile"),
            (r"/ab?c", "/ac"),
            (r"/ab*", "/a"),
            (r"/ab{0,2}", "/a"),
            (r"/a\.?b", "/ab"),
            (r"/x(y)?", "/x"),
            (r"/x(y|)z", "/xz"),
            (r"/r/(?:ab|cd)", "/r/cd"),
        ];
        for (pat, sample) in cases {
            let re = regex::Regex::new(&format!("^(?:{pat})")).unwrap();
            assert!(re.is_match(sample), "{pat} ~ {sample}");
            assert!(sample.starts_with(&literal_prefix(pat)), "{pat}");
        }
    }
}
