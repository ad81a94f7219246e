//! Several exports under one load (`--exports N`, `--targets LIST`): which shelf.slot
//! addresses, and which of them the next request goes to.
//!
//! The queue depth is the total over all exports. Requests are spread per request, not per
//! slot: each new request goes to the next export in turn ([`RoundRobin`]), so every export
//! gets load even when there are more exports than requests in flight (QD 16 over 64
//! exports), and with QD >= N each export has about QD / N requests in flight.

use std::collections::BTreeSet;

/// Highest slot an export can have (0xFF is the wildcard).
pub const MAX_SLOT: u8 = 0xFE;
/// Highest shelf an export can have (0xFFFF is the wildcard).
pub const MAX_SHELF: u16 = 0xFFFE;

/// `n` consecutive slots of one shelf from `first`: `shelf.first` .. `shelf.(first+n-1)`.
pub fn consecutive(shelf: u16, first: u8, n: usize) -> Result<Vec<(u16, u8)>, String> {
    if shelf > MAX_SHELF {
        return Err(format!("shelf {shelf:#x} is the wildcard"));
    }
    if n == 0 {
        return Err("--exports must be at least 1".into());
    }
    let last = usize::from(first) + n - 1;
    if last > usize::from(MAX_SLOT) {
        return Err(format!(
            "--exports {n} from slot {first} would end at slot {last}; the last slot is {MAX_SLOT}"
        ));
    }
    Ok((0..n)
        .map(|i| {
            (
                shelf,
                u8::try_from(usize::from(first) + i).unwrap_or(MAX_SLOT),
            )
        })
        .collect())
}

/// A comma-separated list of `SHELF.SLOT` addresses (`1.0,1.1,2.0`; `e1.0` is accepted too),
/// each at most once.
pub fn parse_targets(list: &str) -> Result<Vec<(u16, u8)>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("'{list}': an empty address"));
        }
        let bare = item.strip_prefix('e').unwrap_or(item);
        let (shelf, slot) = bare
            .split_once('.')
            .ok_or_else(|| format!("'{item}' is not SHELF.SLOT"))?;
        let shelf: u16 = shelf
            .parse()
            .map_err(|_| format!("'{item}': bad shelf '{shelf}'"))?;
        let slot: u8 = slot
            .parse()
            .map_err(|_| format!("'{item}': bad slot '{slot}'"))?;
        if shelf > MAX_SHELF || slot > MAX_SLOT {
            return Err(format!("'{item}': wildcard addresses are not exports"));
        }
        if !seen.insert((shelf, slot)) {
            return Err(format!("'{item}' is listed twice"));
        }
        out.push((shelf, slot));
    }
    Ok(out)
}

/// The export of each new request: 0, 1, .., n-1, 0, 1, ..
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRobin {
    count: usize,
    next: usize,
}

impl RoundRobin {
    /// Over `count` exports (at least 1).
    pub fn new(count: usize) -> RoundRobin {
        RoundRobin {
            count: count.max(1),
            next: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The export the next request goes to; the turn then passes to the one after it.
    pub fn pick(&mut self) -> usize {
        let export = self.next;
        self.next = if export + 1 >= self.count {
            0
        } else {
            export + 1
        };
        export
    }
}

/// Requests in flight per export at a total queue depth `qd` over `n` exports, when every
/// slot is busy: (fewest, most). With per-request round robin this is the average spread;
/// completions out of order can move one export above it for a while.
pub fn depth_per_export(qd: usize, n: usize) -> (usize, usize) {
    let n = n.max(1);
    (qd / n, qd.div_ceil(n))
}

/// The seed of export `index`'s request sequence: export 0 keeps the run's seed, so a
/// single-export run repeats the requests it made before there were several.
pub fn export_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        seed
    } else {
        crate::rng::mix64(seed ^ (index as u64).rotate_left(40))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_slots_of_one_shelf() {
        assert_eq!(consecutive(1, 0, 3).unwrap(), [(1, 0), (1, 1), (1, 2)]);
        assert_eq!(consecutive(7, 254, 1).unwrap(), [(7, 254)]);
        assert_eq!(consecutive(1, 0, 255).unwrap().len(), 255);
        assert!(
            consecutive(1, 1, 255).is_err(),
            "would reach the wildcard slot"
        );
        assert!(consecutive(1, 0, 0).is_err());
        assert!(consecutive(0xFFFF, 0, 1).is_err());
    }

    #[test]
    fn target_lists_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_targets("1.0, 1.1,e2.254").unwrap(),
            [(1, 0), (1, 1), (2, 254)]
        );
        for bad in [
            "", "1", "1.0,,1.1", "1.x", "x.1", "1.255", "65535.0", "1.0,e1.0", "1.256",
        ] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_robin_gives_every_export_its_turn() {
        for n in [1usize, 2, 8, 64] {
            let mut rr = RoundRobin::new(n);
            assert_eq!(rr.count(), n);
            let mut hits = vec![0u32; n];
            for i in 0..n * 10 {
                let e = rr.pick();
                assert_eq!(e, i % n, "strict turns");
                hits[e] += 1;
            }
            assert!(hits.iter().all(|&h| h == 10), "{hits:?}");
        }
        assert_eq!(RoundRobin::new(0).count(), 1, "at least one export");
    }

    #[test]
    fn depth_spreads_evenly() {
        assert_eq!(depth_per_export(64, 1), (64, 64));
        assert_eq!(depth_per_export(64, 8), (8, 8));
        assert_eq!(depth_per_export(16, 64), (0, 1));
        assert_eq!(depth_per_export(10, 4), (2, 3));
        assert_eq!(depth_per_export(5, 0), (5, 5));
    }

    #[test]
    fn export_zero_keeps_the_seed() {
        assert_eq!(export_seed(42, 0), 42);
        let seeds: BTreeSet<u64> = (0..64).map(|i| export_seed(42, i)).collect();
        assert_eq!(seeds.len(), 64, "every export its own sequence");
    }
}
