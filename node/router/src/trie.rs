//! Radix trees of path keys, one per host bucket, in one shared arena.
//!
//! A key is a prefix path, the literal prefix of a regex path, or `""` for
//! candidates without paths. Every node that ends a key holds that key's
//! entries, sorted by rank (best first). A lookup walks the request path
//! from the root; every node it reaches is a key that is a prefix of the
//! path, so its entries are exactly the candidates whose path index
//! condition holds. Each node also records the best rank in its subtree, so
//! a walk stops as soon as nothing below can beat the best match so far.

/// `Entry::port` value for "any port".
pub(crate) const ANY_PORT: u32 = u32::MAX;

/// `Entry::kind` values; `KIND_REGEX_BASE + i` is regex `i`.
pub(crate) const KIND_NO_PATH: u32 = 0;
pub(crate) const KIND_PREFIX: u32 = 1;
pub(crate) const KIND_REGEX_BASE: u32 = 2;

/// One (candidate, host entry, path) triple filed under a key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Lower is better; unique per (candidate, port flag, path).
    pub rank: u64,
    pub cand: u32,
    /// Required port, or [`ANY_PORT`].
    pub port: u32,
    pub kind: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    label_start: u32,
    label_len: u32,
    ent_start: u32,
    ent_len: u32,
    child_start: u32,
    child_len: u32,
    /// Best (lowest) rank of any entry in this subtree.
    pub min_rank: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Arena {
    nodes: Vec<Node>,
    labels: Vec<u8>,
    child_first: Vec<u8>,
    child_node: Vec<u32>,
    entries: Vec<Entry>,
}

impl Arena {
    /// Build one tree from `(key, entry)` items; returns its root.
    pub(crate) fn build(&mut self, mut items: Vec<(Vec<u8>, Entry)>) -> u32 {
        items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.rank.cmp(&b.1.rank)));
        let mut keys: Vec<(Vec<u8>, Vec<Entry>)> = Vec::new();
        for (k, e) in items {
            match keys.last_mut() {
                Some((lk, es)) if *lk == k => es.push(e),
                _ => keys.push((k, vec![e])),
            }
        }
        if keys.is_empty() {
            keys.push((Vec::new(), Vec::new()));
        }
        self.build_node(&keys, 0)
    }

    /// `keys` is sorted, non-empty, and all keys share `keys[0].0[..start]`.
    fn build_node(&mut self, keys: &[(Vec<u8>, Vec<Entry>)], start: usize) -> u32 {
        let first = &keys[0].0;
        let last = &keys[keys.len() - 1].0;
        let mut end = start;
        while end < first.len() && end < last.len() && first[end] == last[end] {
            end += 1;
        }
        let idx = self.nodes.len();
        let label_start = self.labels.len() as u32;
        self.labels.extend_from_slice(&first[start..end]);
        let ent_start = self.entries.len() as u32;
        let mut rest = keys;
        let mut min_rank = u64::MAX;
        if first.len() == end {
            self.entries.extend_from_slice(&keys[0].1);
            if let Some(e) = keys[0].1.first() {
                min_rank = e.rank;
            }
            rest = &keys[1..];
        }
        let ent_len = self.entries.len() as u32 - ent_start;
        self.nodes.push(Node {
            label_start,
            label_len: (end - start) as u32,
            ent_start,
            ent_len,
            child_start: 0,
            child_len: 0,
            min_rank,
        });
        let mut children: Vec<(u8, u32)> = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let b = rest[i].0[end];
            let mut j = i + 1;
            while j < rest.len() && rest[j].0[end] == b {
                j += 1;
            }
            let child = self.build_node(&rest[i..j], end);
            min_rank = min_rank.min(self.nodes[child as usize].min_rank);
            children.push((b, child));
            i = j;
        }
        let child_start = self.child_first.len() as u32;
        for (b, c) in &children {
            self.child_first.push(*b);
            self.child_node.push(*c);
        }
        let node = &mut self.nodes[idx];
        node.child_start = child_start;
        node.child_len = children.len() as u32;
        node.min_rank = min_rank;
        idx as u32
    }

    #[inline]
    pub(crate) fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize]
    }

    #[inline]
    pub(crate) fn label(&self, n: &Node) -> &[u8] {
        let s = n.label_start as usize;
        &self.labels[s..s + n.label_len as usize]
    }

    #[inline]
    pub(crate) fn entries(&self, n: &Node) -> &[Entry] {
        let s = n.ent_start as usize;
        &self.entries[s..s + n.ent_len as usize]
    }

    #[inline]
    pub(crate) fn child(&self, n: &Node, b: u8) -> Option<u32> {
        let s = n.child_start as usize;
        let firsts = &self.child_first[s..s + n.child_len as usize];
        let i = if firsts.len() <= 8 {
            firsts.iter().position(|&f| f == b)?
        } else {
            firsts.binary_search(&b).ok()?
        };
        Some(self.child_node[s + i])
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rank: u64) -> Entry {
        Entry {
            rank,
            cand: rank as u32,
            port: ANY_PORT,
            kind: KIND_PREFIX,
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
            out.extend(a.entries(n).iter().map(|e| (pos, e.rank)));
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
    fn finds_every_key_that_prefixes_the_path() {
        let mut a = Arena::default();
        let keys = [
            "/api/v1",
            "/api",
            "/api/v2/x",
            "/b",
            "",
            "/api/v1/users",
            "/api",
        ];
        let items = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_bytes().to_vec(), e(i as u64)))
            .collect();
        let root = a.build(items);
        assert_eq!(
            walk(&a, root, b"/api/v1/users/7"),
            vec![(0, 4), (4, 1), (4, 6), (7, 0), (13, 5)]
        );
        assert_eq!(walk(&a, root, b"/ap"), vec![(0, 4)]);
        assert_eq!(walk(&a, root, b"/api/v2/y"), vec![(0, 4), (4, 1), (4, 6)]);
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
    }
}
