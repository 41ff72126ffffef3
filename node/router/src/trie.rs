//! Radix trees of path keys, one per host bucket, in one shared arena.
//!
//! A key is a prefix path, the literal prefix of a regex path, or `""` for
//! candidates without paths. Every node that ends a key holds that key's
//! entries, sorted by rank (best first). A lookup walks the request path
//! from the root; every node it reaches is a key that is a prefix of the
//! path, so its entries are exactly the candidates whose path index
//! condition holds. Each node also records the best rank in its subtree, so
//! a walk stops as soon as nothing below can beat the best match so far.
//!
//! Layout is tuned for cache misses, which dominate lookup time with
//! thousands of routes: a node is one aligned 128-byte block (two adjacent
//! lines, which CPUs fetch together) holding its subtree's best rank, its
//! first entry, and its label when it is at most 72 bytes (nearly always);
//! a node's children are stored next to each other, with their first label
//! bytes in a parallel byte array, so finding a child costs one line of
//! bytes and one node.

/// `Entry::port` value for "any port".
pub(crate) const ANY_PORT: u32 = u32::MAX;

/// `Entry::kind` values; `KIND_REGEX_BASE + i` is regex `i`.
pub(crate) const KIND_NO_PATH: u32 = 0;
pub(crate) const KIND_PREFIX: u32 = 1;
pub(crate) const KIND_REGEX_BASE: u32 = 2;

/// One (candidate, host entry, path) triple filed under a key.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Entry {
    /// Lower is better; unique per (candidate, port flag, path).
    pub rank: u64,
    /// Route index (identity in `RouteMatch`).
    pub route: u32,
    /// Required port, or [`ANY_PORT`].
    pub port: u32,
    pub kind: u32,
    /// Allowed methods, see `cond::method_bit`.
    pub methods: u16,
    /// `cond::NEEDS_CONDS` when SNIs or headers must be checked.
    pub flags: u16,
}

const INLINE_LABEL: usize = 72;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(128))]
pub(crate) struct Node {
    /// Best (lowest) rank of any entry in this subtree.
    pub min_rank: u64,
    /// The best entry of this node (valid when `ent_len > 0`).
    first: Entry,
    /// Offset of the label in `Arena::labels` when longer than
    /// `INLINE_LABEL` bytes.
    label_ext: u32,
    label_len: u32,
    /// Entries after the first: `Arena::more[more_start..][..ent_len - 1]`.
    more_start: u32,
    ent_len: u32,
    /// Children: `Arena::nodes[child_start..][..child_len]`, sorted by
    /// first label byte.
    child_start: u32,
    child_len: u16,
    label_inline: [u8; INLINE_LABEL],
}

impl Default for Node {
    fn default() -> Node {
        Node {
            min_rank: u64::MAX,
            first: Entry::default(),
            label_ext: 0,
            label_len: 0,
            more_start: 0,
            ent_len: 0,
            child_start: 0,
            child_len: 0,
            label_inline: [0; INLINE_LABEL],
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Arena {
    nodes: Vec<Node>,
    /// `first_bytes[i]` is the first label byte of `nodes[i]`.
    first_bytes: Vec<u8>,
    labels: Vec<u8>,
    more: Vec<Entry>,
}

type Keyed = (Vec<u8>, Vec<Entry>);

impl Arena {
    /// Build one tree from `(key, entry)` items; returns its root.
    pub(crate) fn build(&mut self, mut items: Vec<(Vec<u8>, Entry)>) -> u32 {
        items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.rank.cmp(&b.1.rank)));
        let mut keys: Vec<Keyed> = Vec::new();
        for (k, e) in items {
            match keys.last_mut() {
                Some((lk, es)) if *lk == k => es.push(e),
                _ => keys.push((k, vec![e])),
            }
        }
        if keys.is_empty() {
            keys.push((Vec::new(), Vec::new()));
        }
        let root = self.alloc(1);
        self.fill(root, &keys, 0);
        root
    }

    fn alloc(&mut self, n: usize) -> u32 {
        let start = self.nodes.len();
        self.nodes.resize(start + n, Node::default());
        self.first_bytes.resize(start + n, 0);
        start as u32
    }

    /// Fill node `idx` from `keys`: sorted, non-empty, all sharing
    /// `keys[0].0[..start]`.
    fn fill(&mut self, idx: u32, keys: &[Keyed], start: usize) {
        let first = &keys[0].0;
        let last = &keys[keys.len() - 1].0;
        let mut end = start;
        while end < first.len() && end < last.len() && first[end] == last[end] {
            end += 1;
        }
        let label = &first[start..end];
        let mut node = Node {
            min_rank: u64::MAX,
            label_len: label.len() as u32,
            ..Node::default()
        };
        if label.len() <= INLINE_LABEL {
            node.label_inline[..label.len()].copy_from_slice(label);
        } else {
            node.label_ext = self.labels.len() as u32;
            self.labels.extend_from_slice(label);
        }
        self.first_bytes[idx as usize] = label.first().copied().unwrap_or(0);
        let mut rest = keys;
        if first.len() == end {
            let es = &keys[0].1;
            if let Some(e) = es.first() {
                node.first = *e;
                node.min_rank = e.rank;
                node.ent_len = es.len() as u32;
                node.more_start = self.more.len() as u32;
                self.more.extend_from_slice(&es[1..]);
            }
            rest = &keys[1..];
        }
        // Group the remaining keys by their byte at `end`.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let b = rest[i].0[end];
            let mut j = i + 1;
            while j < rest.len() && rest[j].0[end] == b {
                j += 1;
            }
            groups.push(i..j);
            i = j;
        }
        let child_start = self.alloc(groups.len());
        for (k, g) in groups.iter().enumerate() {
            let c = child_start + k as u32;
            self.fill(c, &rest[g.clone()], end);
            node.min_rank = node.min_rank.min(self.nodes[c as usize].min_rank);
        }
        node.child_start = child_start;
        node.child_len = groups.len() as u16;
        self.nodes[idx as usize] = node;
    }

    #[inline]
    pub(crate) fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize]
    }

    #[inline]
    pub(crate) fn label<'a>(&'a self, n: &'a Node) -> &'a [u8] {
        let len = n.label_len as usize;
        if len <= INLINE_LABEL {
            &n.label_inline[..len]
        } else {
            let s = n.label_ext as usize;
            &self.labels[s..s + len]
        }
    }

    /// The node's entries, best first, without building a slice.
    #[inline]
    pub(crate) fn entries<'a>(&'a self, n: &'a Node) -> impl Iterator<Item = &'a Entry> + 'a {
        let more = if n.ent_len > 1 {
            let s = n.more_start as usize;
            &self.more[s..s + n.ent_len as usize - 1]
        } else {
            &[]
        };
        let first = (n.ent_len > 0).then_some(&n.first);
        first.into_iter().chain(more)
    }

    /// The child whose label starts with `b`. With a single child, it is
    /// returned without looking at `b`: the caller's label check decides.
    #[inline]
    pub(crate) fn child(&self, n: &Node, b: u8) -> Option<u32> {
        let s = n.child_start as usize;
        match n.child_len {
            0 => None,
            1 => Some(s as u32),
            len => {
                let firsts = &self.first_bytes[s..s + len as usize];
                let i = if firsts.len() <= 16 {
                    firsts.iter().position(|&f| f == b)?
                } else {
                    firsts.binary_search(&b).ok()?
                };
                Some((s + i) as u32)
            }
        }
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Drop spare capacity once every tree is built.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
        self.first_bytes.shrink_to_fit();
        self.labels.shrink_to_fit();
        self.more.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rank: u64) -> Entry {
        Entry {
            rank,
            route: rank as u32,
            port: ANY_PORT,
            kind: KIND_PREFIX,
            ..Entry::default()
        }
    }

    /// All (depth, rank) pairs reached walking `path`.
    fn walk(a: &Arena, root: u32, path: &[u8]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        let mut n = a.node(root);
        let mut pos = 0;
        loop {
            let l = a.label(n);
            if !path[pos..].starts_with(l) {
                break;
            }
            pos += l.len();
            out.extend(a.entries(n).map(|e| (pos, e.rank)));
            if pos == path.len() {
                break;
            }
            match a.child(n, path[pos]) {
                Some(c) => n = a.node(c),
                None => break,
            }
        }
        out
    }

    #[test]
    fn node_is_one_block() {
        assert_eq!(std::mem::size_of::<Node>(), 128);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn finds_every_key_that_prefixes_the_path() {
        let mut a = Arena::default();
        let keys = [
            "/api/v1",
            "/api",
            "/api/v2/x",
            "/b",
            "",
            "/api/v1/users-and-more",
            "/api",
        ];
        let items = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_bytes().to_vec(), e(i as u64)))
            .collect();
        let root = a.build(items);
        assert_eq!(
            walk(&a, root, b"/api/v1/users-and-more/7"),
            vec![(0, 4), (4, 1), (4, 6), (7, 0), (22, 5)]
        );
        assert_eq!(walk(&a, root, b"/ap"), vec![(0, 4)]);
        assert_eq!(walk(&a, root, b"/api/v2/y"), vec![(0, 4), (4, 1), (4, 6)]);
        assert_eq!(
            walk(&a, root, b"/api/v1/users-and-mor"),
            vec![(0, 4), (4, 1), (4, 6), (7, 0)]
        );
        assert_eq!(a.node(root).min_rank, 0);
    }

    #[test]
    fn root_with_a_shared_label() {
        let mut a = Arena::default();
        let root = a.build(vec![(b"/abc".to_vec(), e(1)), (b"/abd".to_vec(), e(2))]);
        assert_eq!(a.label(a.node(root)), b"/ab");
        assert_eq!(walk(&a, root, b"/abd/x"), vec![(4, 2)]);
        assert_eq!(walk(&a, root, b"/a"), vec![]);
    }

    #[test]
    fn wide_nodes_use_binary_search() {
        let mut a = Arena::default();
        let items = (b'a'..=b'z')
            .map(|c| (vec![b'/', c], e(u64::from(c))))
            .collect();
        let root = a.build(items);
        for c in b'a'..=b'z' {
            assert_eq!(walk(&a, root, &[b'/', c, b'/']), vec![(2, u64::from(c))]);
        }
        assert_eq!(walk(&a, root, b"/0"), vec![]);
    }

    #[test]
    fn many_entries_on_one_key() {
        let mut a = Arena::default();
        let items = (0..70_000u64).rev().map(|r| (Vec::new(), e(r))).collect();
        let root = a.build(items);
        let n = a.node(root);
        let ranks: Vec<u64> = a.entries(n).map(|e| e.rank).collect();
        assert_eq!(ranks.len(), 70_000);
        assert!(ranks.windows(2).all(|w| w[0] < w[1]));
    }
}
