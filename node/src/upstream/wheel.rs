//! The weighted round-robin wheel: a precomputed, evenly interleaved
//! sequence of address indices walked with one atomic cursor.
//!
//! Over one turn of the wheel every address appears exactly
//! `weight / gcd(weights)` times, spread as evenly as possible: the k-th
//! occurrence of an address of weight `w` sits at position `(k + 1/2) / w`
//! of the turn (ties go to the lower index). For weights 3:2:1 one turn is
//! `a b a c a b`-like; for equal weights it is plain round-robin.
//!
//! A turn longer than [`MAX_WHEEL`] entries is scaled down proportionally
//! (every positive weight keeps at least one slot), so very uneven weight
//! sets are approximated.

/// Longest wheel we build (entries).
pub(crate) const MAX_WHEEL: u64 = 1 << 16;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Build the wheel for `weights` (index = address index; weight 0 = not on
/// the wheel).
pub(crate) fn build(weights: &[u32]) -> Vec<u32> {
    let g = weights
        .iter()
        .filter(|&&w| w > 0)
        .fold(0u64, |g, &w| gcd(g, w as u64));
    if g == 0 {
        return Vec::new();
    }
    let mut w: Vec<u64> = weights.iter().map(|&x| x as u64 / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_WHEEL {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * MAX_WHEEL / total).max(1);
        }
    }
    // Occurrence k of address i has position (2k+1) / (2 w_i).
    let mut entries: Vec<(u64, u64, u32)> = Vec::with_capacity(w.iter().sum::<u64>() as usize);
    for (i, &wi) in w.iter().enumerate() {
        for k in 0..wi {
            entries.push((2 * k + 1, 2 * wi, i as u32));
        }
    }
    entries.sort_by(|a, b| {
        // a.0/a.1 vs b.0/b.1, exact in u128.
        let l = a.0 as u128 * b.1 as u128;
        let r = b.0 as u128 * a.1 as u128;
        l.cmp(&r).then(a.2.cmp(&b.2))
    });
    entries.into_iter().map(|e| e.2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(wheel: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in wheel {
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn exact_counts_and_interleaving() {
        let w = build(&[300, 200, 100]);
        assert_eq!(w.len(), 6);
        assert_eq!(counts(&w, 3), vec![3, 2, 1]);
        assert_eq!(w, vec![0, 1, 0, 2, 1, 0]);
        let w = build(&[5, 1, 1]);
        assert_eq!(w, vec![0, 0, 0, 1, 2, 0, 0]);
        let w = build(&[100, 100, 100]);
        assert_eq!(w, vec![0, 1, 2]);
    }

    #[test]
    fn zero_weights_excluded() {
        let w = build(&[0, 10, 0, 20]);
        assert_eq!(counts(&w, 4), vec![0, 1, 0, 2]);
        assert!(build(&[0, 0]).is_empty());
        assert!(build(&[]).is_empty());
    }

    #[test]
    fn huge_weight_sets_are_capped() {
        let weights: Vec<u32> = (0..200).map(|i| 65535 - i).collect();
        let w = build(&weights);
        assert!(w.len() as u64 <= MAX_WHEEL + 200);
        assert!(counts(&w, 200).iter().all(|&c| c > 0));
    }
}
