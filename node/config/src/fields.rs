//! Typed access to the spanned tree: mapping fields with unknown-field
//! detection (and "did you mean" suggestions), scalars with type and range
//! checks. Every getter reports its own errors and returns `None` on failure,
//! so decoders go on and collect everything.

use crate::diag::{join_index, join_key, At, Diag};
use crate::yaml::{Key, Node, Value};

/// A node together with its file index and document path.
#[derive(Clone)]
pub(crate) struct Field<'n> {
    pub file: usize,
    pub node: &'n Node,
    pub path: String,
}

impl<'n> Field<'n> {
    pub fn root(file: usize, node: &'n Node) -> Field<'n> {
        Field {
            file,
            node,
            path: String::new(),
        }
    }

    pub fn at(&self) -> At {
        At {
            file: self.file,
            pos: self.node.pos,
            path: self.path.clone(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.node.value, Value::Null)
    }

    fn type_error(&self, d: &mut Diag, expected: &str) {
        d.err(
            &self.at(),
            format!("expected {expected}, found {}", self.node.describe()),
        );
    }

    pub fn str(&self, d: &mut Diag) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_error(d, "string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn nonempty_str(&self, d: &mut Diag) -> Option<String> {
        let s = self.str(d)?;
        if s.is_empty() {
            d.err(&self.at(), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(&self, d: &mut Diag) -> Option<bool> {
        match &self.node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.type_error(d, "boolean");
                None
            }
        }
    }

    /// An integer within `lo..=hi` (an integral float such as `80.0` counts).
    pub fn int(&self, d: &mut Diag, lo: i64, hi: i64) -> Option<i64> {
        let i = match &self.node.value {
            Value::Int(i) => *i,
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
            _ => {
                self.type_error(d, "integer");
                return None;
            }
        };
        if i < lo || i > hi {
            d.err(
                &self.at(),
                format!("value {i} is out of range: must be between {lo} and {hi}"),
            );
            return None;
        }
        Some(i)
    }

    /// A finite number within `lo..=hi`.
    pub fn num(&self, d: &mut Diag, lo: f64, hi: f64) -> Option<f64> {
        let f = match &self.node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => {
                self.type_error(d, "number");
                return None;
            }
        };
        if !(f >= lo && f <= hi) {
            d.err(
                &self.at(),
                format!("value {f} is out of range: must be between {lo} and {hi}"),
            );
            return None;
        }
        Some(f)
    }

    /// The items of a sequence, each with its path.
    pub fn seq(&self, d: &mut Diag) -> Option<Vec<Field<'n>>> {
        match &self.node.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, node)| Field {
                        file: self.file,
                        node,
                        path: join_index(&self.path, i),
                    })
                    .collect(),
            ),
            _ => {
                self.type_error(d, "sequence");
                None
            }
        }
    }

    /// A sequence of strings; bad items are reported and skipped.
    pub fn str_list(&self, d: &mut Diag) -> Option<Vec<(String, Field<'n>)>> {
        let items = self.seq(d)?;
        Some(
            items
                .into_iter()
                .filter_map(|f| f.str(d).map(|s| (s, f)))
                .collect(),
        )
    }

    /// The entries of a mapping, each value with its path.
    pub fn entries(&self, d: &mut Diag) -> Option<Vec<(&'n Key, Field<'n>)>> {
        match &self.node.value {
            Value::Map(m) => Some(
                m.iter()
                    .map(|(k, node)| {
                        (
                            k,
                            Field {
                                file: self.file,
                                node,
                                path: join_key(&self.path, &k.text),
                            },
                        )
                    })
                    .collect(),
            ),
            _ => {
                self.type_error(d, "mapping");
                None
            }
        }
    }

    /// One of a fixed set of string values. `unsupported` lists values Kong
    /// accepts that this version does not: they get a clear message.
    pub fn one_of<T: Copy>(
        &self,
        d: &mut Diag,
        what: &str,
        choices: &[(&str, T)],
        unsupported: &[&str],
    ) -> Option<T> {
        let s = self.str(d)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*v);
        }
        if unsupported.contains(&s.as_str()) {
            d.err(
                &self.at(),
                format!("{what} '{s}' is not supported by this version"),
            );
            return None;
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        d.err(
            &self.at(),
            format!(
                "expected one of: {}, found {}",
                names.join(", "),
                self.node.describe()
            ),
        );
        None
    }

    /// Treat this node as an entity mapping.
    pub fn obj(&self, d: &mut Diag) -> Option<Obj<'n>> {
        let Value::Map(entries) = &self.node.value else {
            self.type_error(d, "mapping");
            return None;
        };
        Some(Obj {
            field: self.clone(),
            entries,
            used: vec![false; entries.len()],
            known: Vec::new(),
        })
    }

    /// Convert to JSON (for plugin configs and credentials).
    pub fn to_json(&self, d: &mut Diag) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match &self.node.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None => {
                    d.err(
                        &self.at(),
                        format!("{} cannot be represented in JSON", self.node.describe()),
                    );
                    return None;
                }
            },
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(_) => {
                let mut out = Vec::new();
                let mut ok = true;
                for f in self.seq(d)? {
                    match f.to_json(d) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Array(out)
            }
            Value::Map(_) => {
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (k, f) in self.entries(d)? {
                    match f.to_json(d) {
                        Some(v) => {
                            out.insert(k.text.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Object(out)
            }
        })
    }
}

/// A mapping read as an entity: fields are taken by name, and `finish`
/// reports every key that no one asked for.
pub(crate) struct Obj<'n> {
    pub field: Field<'n>,
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    pub fn at(&self) -> At {
        self.field.at()
    }

    pub fn path(&self) -> &str {
        &self.field.path
    }

    fn find(&mut self, name: &'static str) -> Option<Field<'n>> {
        if !self.known.contains(&name) {
            self.known.push(name);
        }
        let i = self.entries.iter().position(|(k, _)| k.text == name)?;
        self.used[i] = true;
        Some(Field {
            file: self.field.file,
            node: &self.entries[i].1,
            path: join_key(&self.field.path, name),
        })
    }

    /// The field's value; `None` when absent or null (null means "unset",
    /// as in Kong).
    pub fn get(&mut self, name: &'static str) -> Option<Field<'n>> {
        self.find(name).filter(|f| !f.is_null())
    }

    /// A required field: reports "missing required field" at the entity.
    pub fn require(&mut self, d: &mut Diag, name: &'static str) -> Option<Field<'n>> {
        let f = self.get(name);
        if f.is_none() {
            d.err(&self.at(), format!("missing required field '{name}'"));
        }
        f
    }

    /// Fields Kong knows that carry no meaning here (timestamps, ...).
    pub fn ignore(&mut self, names: &[&'static str]) {
        for n in names {
            let _ = self.find(n);
        }
    }

    /// Fields Kong knows that this version does not implement: an error
    /// when set to anything but null.
    pub fn unsupported(&mut self, d: &mut Diag, names: &[&'static str]) {
        for n in names {
            if let Some(f) = self.get(n) {
                d.err(
                    &f.at(),
                    format!("field '{n}' is not supported by this version"),
                );
            }
        }
    }

    /// Report unknown keys (with a suggestion when one is close).
    pub fn finish(self, d: &mut Diag) {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if self.used[i] || k.text == "_comment" {
                continue;
            }
            let at = At {
                file: self.field.file,
                pos: k.pos,
                path: join_key(&self.field.path, &k.text),
            };
            let msg = match suggest(&k.text, &self.known) {
                Some(s) => format!("unknown field '{}' (did you mean '{s}'?)", k.text),
                None => format!("unknown field '{}'", k.text),
            };
            d.err(&at, msg);
        }
    }
}

/// The closest of `known` to `word` when it is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|k| (edit_distance(&word.to_lowercase(), k), *k))
        .filter(|(dist, _)| *dist <= limit)
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("hosts", "hosts"), 0);
        assert_eq!(edit_distance("hots", "hosts"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["hosts", "paths", "methods", "headers"];
        assert_eq!(suggest("hots", &known), Some("hosts"));
        assert_eq!(suggest("path", &known), Some("paths"));
        assert_eq!(suggest("zzzzzz", &known), None);
    }
}
