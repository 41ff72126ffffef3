//! The consistent-hashing ring (Kong's Ketama-style "continuum").
//!
//! The ring has `slots` positions. Each address with weight `w` gets
//! `floor(w / total * addresses * 160)` points (at least one), placed at
//! `hash("ip:port n") % slots`; a point that collides with an occupied one
//! is moved forward to the next `n`, as Kong does. When that many points do
//! not fit in `slots` (more than 62 equally weighted addresses on the
//! default 10,000), every address's share is scaled down to fill three
//! quarters of the ring, so that all addresses get points, in proportion
//! to their weights, instead of the last ones in address order none. A request's value hashes
//! to a position; the owner is the first point at or before it, walking
//! counter-clockwise (and on to the following points when the owner is
//! unusable). Only occupied points are stored, sorted, so a lookup is a
//! binary search.
//!
//! The hash is a fixed function (FNV-1a + a 64-bit finalizer), so every
//! node of a cluster maps a given value to the same address.

use std::collections::HashSet;
use std::net::SocketAddr;

/// Points per address when all weights are equal (Kong's SERVER_POINTS).
const POINTS_PER_ADDRESS: u64 = 160;

/// The share of a ring's positions taken when the addresses' points would
/// not fit at `POINTS_PER_ADDRESS`, as a fraction (numerator, denominator):
/// a full ring would need ever longer probing to place the last points.
const FILL_WHEN_SCALED: (u64, u64) = (3, 4);

/// Deterministic 64-bit hash of bytes.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finalizer: spreads the low bits used by `% slots`.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[derive(Debug, Default)]
pub(crate) struct Ring {
    slots: u64,
    /// (position, address index), sorted by position.
    points: Vec<(u32, u32)>,
}

impl Ring {
    /// `addrs[i]` with weight `weights[i]` (0 = not on the ring).
    pub(crate) fn build(slots: u32, addrs: &[SocketAddr], weights: &[u32]) -> Ring {
        let slots = (slots as u64).clamp(10, 1 << 24);
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let live = weights.iter().filter(|&&w| w > 0).count() as u64;
        if total == 0 {
            return Ring {
                slots,
                points: Vec::new(),
            };
        }
        // Kong sorts addresses so that collisions resolve identically
        // whatever the order targets were declared or resolved in.
        let mut order: Vec<usize> = (0..addrs.len()).filter(|&i| weights[i] > 0).collect();
        order.sort_by_key(|&i| (addrs[i].ip(), addrs[i].port()));
        let mut taken: HashSet<u32> = HashSet::new();
        let mut points = Vec::new();
        let budget = slots; // never more points than positions
                            // All points: 160 per address, or three quarters of the ring when
                            // that many do not fit.
        let all_points = if live * POINTS_PER_ADDRESS <= slots {
            live * POINTS_PER_ADDRESS
        } else {
            slots * FILL_WHEN_SCALED.0 / FILL_WHEN_SCALED.1
        };
        for &i in &order {
            let want = ((weights[i] as u64 * all_points) / total).max(1);
            let key = format!("{}:{}", addrs[i].ip(), addrs[i].port());
            let mut placed = 0u64;
            let mut n = 1u64;
            while placed < want && (taken.len() as u64) < budget && n <= want + 4 * slots {
                let pos = (hash(format!("{key} {n}").as_bytes()) % slots) as u32;
                n += 1;
                if taken.insert(pos) {
                    points.push((pos, i as u32));
                    placed += 1;
                }
            }
            if placed == 0 {
                tracing::error!(
                    address = %addrs[i],
                    slots,
                    "consistent-hashing ring is full; increase the upstream's slots"
                );
            }
        }
        points.sort_unstable();
        Ring { slots, points }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Address indices in ring order starting from the owner of `h`,
    /// walking counter-clockwise, each point once.
    pub(crate) fn walk(&self, h: u64) -> impl Iterator<Item = u32> + '_ {
        let n = self.points.len();
        let pos = (h % self.slots.max(1)) as u32;
        // Index of the last point with position <= pos (wrapping to the end).
        let idx = self.points.partition_point(|p| p.0 <= pos);
        let start = if idx == 0 { n.wrapping_sub(1) } else { idx - 1 };
        (0..n).map(move |k| self.points[(start + n - k) % n].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i)))
            .collect()
    }

    #[test]
    fn hash_is_fixed() {
        assert_eq!(hash(b"abc"), hash(b"abc"));
        assert_ne!(hash(b"abc"), hash(b"abd"));
    }

    #[test]
    fn points_proportional_to_weight() {
        let a = addrs(2);
        let r = Ring::build(10000, &a, &[100, 300]);
        let c0 = r.points.iter().filter(|p| p.1 == 0).count();
        let c1 = r.points.iter().filter(|p| p.1 == 1).count();
        assert_eq!((c0, c1), (80, 240));
        let r = Ring::build(10000, &a, &[0, 300]);
        assert!(r.points.iter().all(|p| p.1 == 1));
    }

    #[test]
    fn walk_visits_every_point_once() {
        let a = addrs(3);
        let r = Ring::build(1000, &a, &[1, 1, 1]);
        for h in [0u64, 1, 999, 12345, u64::MAX] {
            let v: Vec<u32> = r.walk(h).collect();
            assert_eq!(v.len(), r.points.len());
        }
        assert_eq!(Ring::build(1000, &a, &[0, 0, 0]).walk(5).count(), 0);
    }

    #[test]
    fn every_address_gets_its_share_when_160_points_each_do_not_fit() {
        // 100 equally weighted addresses on the default 10,000 slots: 160
        // points each would need 16,000 positions.
        let a = addrs(100);
        let r = Ring::build(10000, &a, &[100; 100]);
        let mut per_address = [0usize; 100];
        for p in &r.points {
            per_address[p.1 as usize] += 1;
        }
        assert!(per_address.iter().all(|&n| n == 75), "{per_address:?}");
        // Keys spread over all of them, about 1% each.
        let mut hits = [0usize; 100];
        for k in 0..100_000u32 {
            let owner = r.walk(hash(&k.to_le_bytes())).next().expect("owner");
            hits[owner as usize] += 1;
        }
        let (min, max) = (hits.iter().min(), hits.iter().max());
        assert!(
            min >= Some(&400) && max <= Some(&2_000),
            "keys per address: min {min:?}, max {max:?}"
        );
        // Weights still count: a double-weight address gets double points.
        let mut w = [100u32; 100];
        w[7] = 200;
        let r = Ring::build(10000, &a, &w);
        let n = |i: u32| r.points.iter().filter(|p| p.1 == i).count();
        assert_eq!((n(7), n(8)), (148, 74));
    }

    #[test]
    fn small_ring_does_not_loop_forever() {
        let a = addrs(20);
        let r = Ring::build(10, &a, &[1; 20]);
        assert_eq!(r.points.len(), 10);
    }
}
