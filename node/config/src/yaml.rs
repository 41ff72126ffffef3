//! YAML (and JSON, which is YAML flow style) text -> a spanned tree.
//!
//! Built on `saphyr-parser`'s event API. The tree keeps the 1-based line and
//! column of every node and mapping key so later stages can point at the
//! exact offending text. Safety limits: nesting depth ([`MAX_DEPTH`]), alias
//! expansion (billion-laughs safe, see [`alias_budget`]), one document per
//! file. Plain scalars resolve with the YAML 1.2 core schema (plus the YAML
//! 1.1 merge key `<<`, which Kong configs use with anchors).

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// Deepest nesting of sequences/mappings accepted (the root counts as 1).
pub const MAX_DEPTH: usize = 64;

/// How many nodes aliases may add to a document that has `written` nodes of
/// its own: the document may grow to about eleven times its written size,
/// never to millions of nodes from a few lines.
pub fn alias_budget(written: usize) -> usize {
    10_000 + 10 * written
}

/// A position in a source file (1-based; 0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text (scalar keys only) and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub pos: Pos,
}

impl Node {
    /// Entries when this node is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// A short description used in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_string(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Str(s) => format!("string {}", quote_short(s)),
            Value::Seq(_) => "sequence".to_string(),
            Value::Map(_) => "mapping".to_string(),
        }
    }

    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(v) => v.iter().map(Node::size).sum(),
            Value::Map(m) => m.iter().map(|(_, v)| v.size()).sum(),
            _ => 0,
        }
    }

    fn height(&self) -> usize {
        1 + match &self.value {
            Value::Seq(v) => v.iter().map(Node::height).max().unwrap_or(0),
            Value::Map(m) => m.iter().map(|(_, v)| v.height()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// `"text"` with JSON-style escapes, cut after 60 characters.
pub fn quote_short(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    let mut q = serde_json::Value::String(cut).to_string();
    if s.chars().count() > 60 {
        q.push('…');
    }
    q
}

/// A problem found while reading YAML. `fatal` errors (syntax, limits) mean
/// no tree is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    /// Document path of the node (`services[0].routes`), empty at the root.
    pub path: String,
    pub message: String,
}

/// The result of loading one file: a tree (unless a fatal error occurred)
/// and the non-fatal errors (duplicate keys, bad tags, ...).
#[derive(Debug)]
pub struct Loaded {
    pub root: Option<Node>,
    pub errors: Vec<YamlError>,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<PendingKey>,
        /// Keys that came from a `<<` merge: explicit keys replace them.
        merged: Vec<String>,
    },
}

struct PendingKey {
    key: Key,
    /// `<<` written as a plain scalar: a YAML merge key.
    merge: bool,
    /// The key was not a scalar: the entry is dropped (error already given).
    invalid: bool,
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize, usize)>,
    written: usize,
    expanded: usize,
    root: Option<Node>,
    errors: Vec<YamlError>,
}

enum Step {
    Continue,
    Fatal(YamlError),
}

/// Load a JSON document this crate emitted itself (a normalized config
/// from [`crate::Config::to_declarative`]) through `serde_json`, which is
/// about ten times faster than the spanned YAML reader. Nodes carry no
/// positions, and duplicate keys are not reported (serde_json keeps the
/// last), so this is only for trusted, already validated text; callers fall
/// back to [`load`] to report errors with their lines.
pub fn load_trusted_json(text: &str) -> Option<Node> {
    let root = serde_json::from_str::<JsonNode>(text).ok()?.0;
    // The same limit the YAML reader enforces (JSON has no aliases).
    (root.height() <= MAX_DEPTH).then_some(root)
}

/// Deserializes JSON straight into a [`Node`] (no `serde_json::Value` in
/// between: this is on every node's apply path).
struct JsonNode(Node);

impl<'de> serde::Deserialize<'de> for JsonNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonNodeVisitor).map(JsonNode)
    }
}

struct JsonNodeVisitor;

fn unpositioned(value: Value) -> Node {
    Node {
        pos: Pos::default(),
        value,
    }
}

impl<'de> serde::de::Visitor<'de> for JsonNodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(unpositioned(Value::Null))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(unpositioned(Value::Bool(b)))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Node, E> {
        Ok(unpositioned(Value::Int(i)))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Node, E> {
        Ok(unpositioned(match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(u as f64),
        }))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Node, E> {
        Ok(unpositioned(Value::Float(f)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(unpositioned(Value::Str(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(unpositioned(Value::Str(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(JsonNode(n)) = seq.next_element()? {
            items.push(n);
        }
        Ok(unpositioned(Value::Seq(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        // serde_json keeps the last of duplicate keys; normalized text has
        // none (see the function's doc).
        let mut entries: Vec<(Key, Node)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        // Key -> position, only for maps too large for a linear search.
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some((k, JsonNode(v))) = map.next_entry::<String, JsonNode>()? {
            if entries.len() == 16 {
                index = Some(
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, (e, _))| (e.text.clone(), i))
                        .collect(),
                );
            }
            let existing = match &mut index {
                Some(index) => match index.get(&k) {
                    Some(&i) => Some(i),
                    None => {
                        index.insert(k.clone(), entries.len());
                        None
                    }
                },
                None => entries.iter().position(|(e, _)| e.text == k),
            };
            match existing {
                Some(i) => entries[i].1 = v,
                None => entries.push((
                    Key {
                        text: k,
                        pos: Pos::default(),
                    },
                    v,
                )),
            }
        }
        Ok(unpositioned(Value::Map(entries)))
    }
}

/// Load one YAML/JSON document.
pub fn load(text: &str) -> Loaded {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        written: 0,
        expanded: 0,
        root: None,
        errors: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    while let Some(item) = parser.next_event() {
        let (event, span) = match item {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                b.errors.push(YamlError {
                    pos: Pos {
                        line: m.line(),
                        col: m.col() + 1,
                    },
                    path: b.path(),
                    message: format!("invalid YAML: {}", e.info()),
                });
                return Loaded {
                    root: None,
                    errors: b.errors,
                };
            }
        };
        let step = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => {
                Step::Continue
            }
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    Step::Fatal(YamlError {
                        pos: Pos::of(&span),
                        path: String::new(),
                        message: "a file must hold exactly one YAML document; found a second one"
                            .to_string(),
                    })
                } else {
                    Step::Continue
                }
            }
            Event::Scalar(text, style, anchor, tag) => b.scalar(text, style, anchor, tag, span),
            Event::SequenceStart(anchor, tag) => {
                b.tag_check(tag.as_deref(), "seq", span);
                b.open(Frame::Seq {
                    pos: Pos::of(&span),
                    anchor,
                    items: Vec::new(),
                })
            }
            Event::MappingStart(anchor, tag) => {
                b.tag_check(tag.as_deref(), "map", span);
                b.open(Frame::Map {
                    pos: Pos::of(&span),
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                    merged: Vec::new(),
                })
            }
            Event::SequenceEnd | Event::MappingEnd => b.close(),
            Event::Alias(id) => b.alias(id, span),
        };
        if let Step::Fatal(e) = step {
            b.errors.push(e);
            return Loaded {
                root: None,
                errors: b.errors,
            };
        }
    }
    Loaded {
        root: b.root,
        errors: b.errors,
    }
}

impl Builder {
    /// The document path of the node about to be added.
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            match f {
                Frame::Seq { items, .. } => p.push_str(&format!("[{}]", items.len())),
                Frame::Map { pending_key, .. } => {
                    if let Some(k) = pending_key {
                        if !p.is_empty() {
                            p.push('.');
                        }
                        p.push_str(&k.key.text);
                    }
                }
            }
        }
        p
    }

    fn error(&mut self, pos: Pos, message: String) {
        let path = self.path();
        self.errors.push(YamlError { pos, path, message });
    }

    fn tag_check(&mut self, tag: Option<&Tag>, expected: &str, span: Span) {
        if let Some(t) = tag {
            if !(t.is_yaml_core_schema() && t.suffix == expected) {
                self.error(Pos::of(&span), format!("unsupported YAML tag '{t}'"));
            }
        }
    }

    fn open(&mut self, frame: Frame) -> Step {
        if self.stack.len() + 1 > MAX_DEPTH {
            let pos = match &frame {
                Frame::Seq { pos, .. } | Frame::Map { pos, .. } => *pos,
            };
            return Step::Fatal(YamlError {
                pos,
                path: self.path(),
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Step::Continue
    }

    fn close(&mut self) -> Step {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (
                Node {
                    pos,
                    value: Value::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                entries,
                ..
            }) => (
                Node {
                    pos,
                    value: Value::Map(entries),
                },
                anchor,
            ),
            None => return Step::Continue,
        };
        self.add(node, anchor, false)
    }

    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<Cow<'_, Tag>>,
        span: Span,
    ) -> Step {
        let pos = Pos::of(&span);
        // Mapping keys: only their text matters.
        if let Some(Frame::Map { pending_key, .. }) = self.stack.last() {
            if pending_key.is_none() {
                let merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let key = Key {
                    text: text.into_owned(),
                    pos,
                };
                if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                    *pending_key = Some(PendingKey {
                        key,
                        merge,
                        invalid: false,
                    });
                }
                return Step::Continue;
            }
        }
        let value = match tag.as_deref() {
            Some(t) => match resolve_tagged(t, &text) {
                Ok(v) => v,
                Err(msg) => {
                    self.error(pos, msg);
                    Value::Str(text.into_owned())
                }
            },
            None if style == ScalarStyle::Plain => resolve_plain(&text),
            None => Value::Str(text.into_owned()),
        };
        self.add(Node { pos, value }, anchor, false)
    }

    fn alias(&mut self, id: usize, span: Span) -> Step {
        let pos = Pos::of(&span);
        let Some((node, size, height)) = self.anchors.get(&id) else {
            return Step::Fatal(YamlError {
                pos,
                path: self.path(),
                message: "alias to an unknown anchor".to_string(),
            });
        };
        let (size, height) = (*size, *height);
        if self.stack.len() + height > MAX_DEPTH {
            return Step::Fatal(YamlError {
                pos,
                path: self.path(),
                message: format!("alias expands to nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        if self.expanded + size > alias_budget(self.written) {
            return Step::Fatal(YamlError {
                pos,
                path: self.path(),
                message: format!(
                    "aliases expand to too many nodes (more than {}); refusing a possible alias bomb",
                    alias_budget(self.written)
                ),
            });
        }
        self.expanded += size;
        let mut node = node.clone();
        node.pos = pos;
        self.add(node, 0, true)
    }

    /// Attach a finished node to its parent (or make it the root).
    fn add(&mut self, node: Node, anchor: usize, from_alias: bool) -> Step {
        if !from_alias {
            self.written += 1;
        }
        if anchor != 0 {
            let (size, height) = (node.size(), node.height());
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        // A non-scalar in key position: record an invalid key.
        if let Some(Frame::Map { pending_key, .. }) = self.stack.last() {
            if pending_key.is_none() {
                let pos = node.pos;
                self.error(pos, "mapping keys must be strings".to_string());
                if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                    *pending_key = Some(PendingKey {
                        key: Key {
                            text: String::new(),
                            pos,
                        },
                        merge: false,
                        invalid: true,
                    });
                }
                return Step::Continue;
            }
        }
        let mut errs = Vec::new();
        let mut err_key = String::new();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                merged,
                ..
            }) => {
                if let Some(pk) = pending_key.take() {
                    if pk.invalid {
                        return Step::Continue;
                    }
                    err_key.clone_from(&pk.key.text);
                    if pk.merge {
                        merge_into(entries, merged, node, &mut errs);
                    } else if let Some(i) = entries.iter().position(|(k, _)| k.text == pk.key.text)
                    {
                        if let Some(m) = merged.iter().position(|k| *k == pk.key.text) {
                            merged.swap_remove(m);
                            entries[i] = (pk.key, node);
                        } else {
                            errs.push((
                                pk.key.pos,
                                format!(
                                    "duplicate key '{}' (first at line {})",
                                    pk.key.text, entries[i].0.pos.line
                                ),
                            ));
                        }
                    } else {
                        entries.push((pk.key, node));
                    }
                }
            }
        }
        if !errs.is_empty() {
            let path = crate::diag::join_key(&self.path(), &err_key);
            for (pos, message) in errs {
                self.errors.push(YamlError {
                    pos,
                    path: path.clone(),
                    message,
                });
            }
        }
        Step::Continue
    }
}

/// YAML merge key: copy entries of `src` (a mapping or a sequence of
/// mappings) whose keys are not set yet. Explicit keys win, whether written
/// before or after the merge key.
fn merge_into(
    entries: &mut Vec<(Key, Node)>,
    merged: &mut Vec<String>,
    src: Node,
    errs: &mut Vec<(Pos, String)>,
) {
    let maps = match src.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => {
            let mut maps = Vec::new();
            for it in items {
                match it.value {
                    Value::Map(m) => maps.push(m),
                    _ => errs.push((it.pos, "'<<' merges only mappings".to_string())),
                }
            }
            maps
        }
        _ => {
            errs.push((src.pos, "'<<' merges only mappings".to_string()));
            return;
        }
    };
    for m in maps {
        for (k, v) in m {
            if !entries.iter().any(|(e, _)| e.text == k.text) {
                merged.push(k.text.clone());
                entries.push((k, v));
            }
        }
    }
}

fn resolve_tagged(tag: &Tag, text: &str) -> Result<Value, String> {
    if !tag.is_yaml_core_schema() {
        return Err(format!("unsupported YAML tag '{tag}'"));
    }
    let v = match tag.suffix.as_str() {
        "str" => return Ok(Value::Str(text.to_string())),
        "null" | "bool" | "int" | "float" => resolve_plain(text),
        _ => return Err(format!("unsupported YAML tag '{tag}'")),
    };
    let ok = matches!(
        (tag.suffix.as_str(), &v),
        ("null", Value::Null)
            | ("bool", Value::Bool(_))
            | ("int", Value::Int(_))
            | ("float", Value::Float(_))
    );
    match (ok, v) {
        (true, v) => Ok(v),
        (false, Value::Int(i)) if tag.suffix == "float" => Ok(Value::Float(i as f64)),
        _ => Err(format!("'{text}' is not a valid {tag}")),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Int(i);
            }
        }
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => s
                .parse::<f64>()
                .map_or(Value::Str(s.to_string()), Value::Float),
        };
    }
    if is_core_float(s) {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.to_string())
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(s: &str) -> bool {
    let b = s.strip_prefix(['-', '+']).unwrap_or(s).as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of a map node, in order.
    fn keys(n: &Node) -> Vec<&str> {
        n.as_map()
            .expect("a map")
            .iter()
            .map(|(k, _)| k.text.as_str())
            .collect()
    }

    #[test]
    fn trusted_json_reads_like_the_yaml_reader_without_positions() {
        let text =
            r#"{"a": [1, -2, 18446744073709551615, 1.5, "s\u00e9", true, null], "b": {"c": {}}}"#;
        let mut yaml = load(text).root.expect("yaml root");
        fn strip(n: &mut Node) {
            n.pos = Pos::default();
            match &mut n.value {
                Value::Seq(items) => items.iter_mut().for_each(strip),
                Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                    k.pos = Pos::default();
                    strip(v)
                }),
                _ => {}
            }
        }
        strip(&mut yaml);
        assert_eq!(load_trusted_json(text), Some(yaml));
        assert_eq!(load_trusted_json("{"), None);
    }

    #[test]
    fn trusted_json_keeps_the_last_of_duplicate_keys_in_small_and_large_maps() {
        let small = load_trusted_json(r#"{"x": 1, "y": 2, "x": 3}"#).unwrap();
        assert_eq!(keys(&small), ["x", "y"]);
        assert_eq!(small.as_map().unwrap()[0].1.value, Value::Int(3));
        // 20 distinct keys, then k3 and k18 again: past the linear search.
        let mut body: Vec<String> = (0..20).map(|i| format!("\"k{i}\": {i}")).collect();
        body.push("\"k3\": 300".into());
        body.push("\"k18\": 1800".into());
        let large = load_trusted_json(&format!("{{{}}}", body.join(","))).unwrap();
        let m = large.as_map().unwrap();
        assert_eq!(m.len(), 20);
        assert_eq!(m[3].1.value, Value::Int(300));
        assert_eq!(m[18].1.value, Value::Int(1800));
        assert_eq!(m[19].1.value, Value::Int(19));
    }

    fn root(text: &str) -> Node {
        let l = load(text);
        assert_eq!(l.errors, vec![]);
        l.root.expect("root")
    }

    #[test]
    fn positions_are_one_based() {
        let n = root("a: 1\nb:\n  - x\n");
        let b = n.get("b").expect("b");
        assert_eq!(b.pos, Pos { line: 3, col: 3 });
        let Value::Seq(items) = &b.value else {
            panic!("seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(n.as_map().expect("map")[1].0.pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn core_schema_scalars() {
        let n = root("a: 80\nb: '80'\nc: 1.5\nd: true\ne: ~\nf: 0x1F\ng: 1e3\nh: abc\ni: .inf\n");
        let v = |k: &str| n.get(k).expect(k).value.clone();
        assert_eq!(v("a"), Value::Int(80));
        assert_eq!(v("b"), Value::Str("80".into()));
        assert_eq!(v("c"), Value::Float(1.5));
        assert_eq!(v("d"), Value::Bool(true));
        assert_eq!(v("e"), Value::Null);
        assert_eq!(v("f"), Value::Int(31));
        assert_eq!(v("g"), Value::Float(1000.0));
        assert_eq!(v("h"), Value::Str("abc".into()));
        assert_eq!(v("i"), Value::Float(f64::INFINITY));
    }

    #[test]
    fn json_is_accepted() {
        let n = root(r#"{"a": [1, "x", null], "b": {"c": false}}"#);
        assert_eq!(
            n.get("a").expect("a").value,
            Value::Seq(vec![
                Node {
                    pos: Pos { line: 1, col: 8 },
                    value: Value::Int(1)
                },
                Node {
                    pos: Pos { line: 1, col: 11 },
                    value: Value::Str("x".into())
                },
                Node {
                    pos: Pos { line: 1, col: 16 },
                    value: Value::Null
                },
            ])
        );
    }

    #[test]
    fn aliases_and_merge_keys() {
        let n = root("d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  y: 3\nf: *d\n");
        let e = n.get("e").expect("e");
        assert_eq!(e.get("x").expect("x").value, Value::Int(1));
        assert_eq!(e.get("y").expect("y").value, Value::Int(3));
        assert_eq!(
            n.get("f").expect("f").get("y").expect("y").value,
            Value::Int(2)
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let l = load("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(
            l.errors,
            vec![YamlError {
                pos: Pos { line: 4, col: 3 },
                path: "b.c".into(),
                message: "duplicate key 'c' (first at line 3)".into()
            }]
        );
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let l = load(&text);
        assert!(l.root.is_none());
        assert_eq!(l.errors.len(), 1);
        assert!(
            l.errors[0]
                .message
                .starts_with("aliases expand to too many nodes"),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let l = load(&text);
        assert!(l.root.is_none());
        assert_eq!(l.errors[0].message, "nesting deeper than 64 levels");
        assert_eq!(l.errors[0].pos, Pos { line: 1, col: 65 });
    }

    #[test]
    fn two_documents_are_rejected() {
        let l = load("a: 1\n---\nb: 2\n");
        assert!(l.root.is_none());
        assert_eq!(l.errors[0].pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn syntax_error_has_position() {
        let l = load("a: [1\n");
        assert!(l.root.is_none());
        assert_eq!(
            l.errors,
            vec![YamlError {
                pos: Pos { line: 2, col: 1 },
                path: "a[1]".into(),
                message: "invalid YAML: while parsing a flow sequence, expected ',' or ']'".into()
            }]
        );
    }
}
