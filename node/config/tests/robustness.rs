//! Arbitrary input never panics: it parses or yields located errors.

mod common;

use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_fixture_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..6)) {
        let mut chars: Vec<char> = FIXTURE.chars().collect();
        for (i, c) in edits {
            let at = i.index(chars.len());
            chars[at] = c;
        }
        let text: String = chars.into_iter().collect();
        if let Err(e) = load(&text) {
            prop_assert!(!e.0.is_empty());
            for err in &e.0 {
                prop_assert_eq!(&err.file, "kong.yml");
                prop_assert!(err.line >= 1, "{}", err);
            }
        }
    }

    #[test]
    fn random_yamlish_text_never_panics(text in "[-:&*!|>'\"{}\\[\\],#?%@` a-z0-9\n]{0,200}") {
        let _ = load(&text);
    }
}
