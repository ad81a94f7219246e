//! The exports one worker serves on one link, by shelf.slot, and where a request goes.
//!
//! A request names one shelf.slot, or uses the wildcards (shelf 0xFFFF, slot 0xFF, or both).
//! A Query Config with a wildcard is answered once by every export it matches (that is how
//! an initiator discovers a whole box); any other command with a wildcard is served only when
//! exactly one export matches (so a one-export xblade behaves as vblade does), and dropped as
//! ambiguous otherwise: a wildcard write must never land on several volumes at once.

use std::fmt;

use aoe_proto::{Command, MAJOR_ANY, MINOR_ANY};

/// A shelf.slot, ordered shelf first. Never a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExportKey(u32);

impl ExportKey {
    pub const fn new(major: u16, minor: u8) -> ExportKey {
        ExportKey(((major as u32) << 8) | minor as u32)
    }

    pub const fn major(self) -> u16 {
        (self.0 >> 8) as u16
    }

    pub const fn minor(self) -> u8 {
        self.0 as u8
    }

    /// The key the XDP program's `targets` map uses: `(major << 8) | minor`.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// True for a shelf.slot that can be served (neither part is a wildcard value).
    pub const fn is_addressable(self) -> bool {
        self.major() != MAJOR_ANY && self.minor() != MINOR_ANY
    }
}

/// `eSHELF.SLOT`, as aoetools and the Linux initiator name devices.
impl fmt::Display for ExportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}.{}", self.major(), self.minor())
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// No export here has that address.
    None,
    /// The export at this index of the table.
    One(usize),
    /// A wildcard Query Config: one reply from each export [`ExportTable::matching`] yields.
    FanOut,
    /// Another command with a wildcard that matches several exports: dropped.
    Ambiguous,
}

/// Exports sorted by shelf.slot. Insertions happen on the control path (start-up, reload)
/// into capacity reserved at start; lookups on the data path allocate nothing.
#[derive(Debug)]
pub struct ExportTable<E> {
    entries: Vec<(ExportKey, E)>,
}

impl<E> Default for ExportTable<E> {
    fn default() -> Self {
        ExportTable {
            entries: Vec::new(),
        }
    }
}

impl<E> ExportTable<E> {
    pub fn with_capacity(capacity: usize) -> ExportTable<E> {
        ExportTable {
            entries: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: ExportKey) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |(k, _)| *k)
    }

    /// Adds or replaces the export at `key`; returns the one replaced.
    pub fn insert(&mut self, key: ExportKey, export: E) -> Option<E> {
        match self.position(key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, export)),
            Err(i) => {
                self.entries.insert(i, (key, export));
                None
            }
        }
    }

    pub fn remove(&mut self, key: ExportKey) -> Option<E> {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn get(&self, key: ExportKey) -> Option<&E> {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: ExportKey) -> Option<&mut E> {
        self.position(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// The export at `index` (as [`Route::One`] and [`ExportTable::matching`] give it).
    pub fn at(&self, index: usize) -> Option<(ExportKey, &E)> {
        self.entries.get(index).map(|(k, e)| (*k, e))
    }

    pub fn at_mut(&mut self, index: usize) -> Option<(ExportKey, &mut E)> {
        self.entries.get_mut(index).map(|(k, e)| (*k, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ExportKey, &E)> {
        self.entries.iter().map(|(k, e)| (*k, e))
    }

    pub fn keys(&self) -> impl Iterator<Item = ExportKey> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The indices of the exports a request addressed to `major`.`minor` reaches, starting
    /// at index `from` (to resume a fan-out): one at most for a full address, every match
    /// for a wildcard.
    pub fn matching(&self, major: u16, minor: u8, from: usize) -> impl Iterator<Item = usize> + '_ {
        let (start, end) = match (major, minor) {
            (MAJOR_ANY, _) => (0, self.entries.len()),
            (major, MINOR_ANY) => (
                self.lower_bound(ExportKey::new(major, 0)),
                self.lower_bound(ExportKey::new(major, MINOR_ANY)),
            ),
            (major, minor) => match self.position(ExportKey::new(major, minor)) {
                Ok(i) => (i, i + 1),
                Err(_) => (0, 0),
            },
        };
        (start.max(from)..end).filter(move |&i| {
            let key = self.entries[i].0;
            (major == MAJOR_ANY || key.major() == major)
                && (minor == MINOR_ANY || key.minor() == minor)
        })
    }

    fn lower_bound(&self, key: ExportKey) -> usize {
        self.entries.partition_point(|(k, _)| *k < key)
    }

    /// Where a request with command code `command` addressed to `major`.`minor` goes.
    pub fn route(&self, major: u16, minor: u8, command: u8) -> Route {
        if major != MAJOR_ANY && minor != MINOR_ANY {
            return match self.position(ExportKey::new(major, minor)) {
                Ok(i) => Route::One(i),
                Err(_) => Route::None,
            };
        }
        let mut matches = self.matching(major, minor, 0);
        match (matches.next(), matches.next()) {
            (None, _) => Route::None,
            _ if command == Command::QueryConfig as u8 => Route::FanOut,
            (Some(i), None) => Route::One(i),
            (Some(_), Some(_)) => Route::Ambiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATA: u8 = Command::Ata as u8;
    const CONFIG: u8 = Command::QueryConfig as u8;

    fn table(keys: &[(u16, u8)]) -> ExportTable<&'static str> {
        let mut t = ExportTable::with_capacity(keys.len());
        for &(major, minor) in keys {
            assert!(t.insert(ExportKey::new(major, minor), "x").is_none());
        }
        t
    }

    fn matches(t: &ExportTable<&str>, major: u16, minor: u8) -> Vec<String> {
        t.matching(major, minor, 0)
            .map(|i| t.at(i).unwrap().0.to_string())
            .collect()
    }

    #[test]
    fn key_round_trip_and_display() {
        let k = ExportKey::new(0x1234, 0x56);
        assert_eq!((k.major(), k.minor(), k.raw()), (0x1234, 0x56, 0x12_3456));
        assert_eq!(k.to_string(), "e4660.86");
        assert!(k.is_addressable());
        assert!(!ExportKey::new(MAJOR_ANY, 1).is_addressable());
        assert!(!ExportKey::new(1, MINOR_ANY).is_addressable());
    }

    #[test]
    fn insert_keeps_order_and_replaces() {
        let mut t = table(&[(7, 1), (1, 0), (7, 0), (2, 9)]);
        let keys: Vec<String> = t.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["e1.0", "e2.9", "e7.0", "e7.1"]);
        assert_eq!(t.insert(ExportKey::new(2, 9), "y"), Some("x"));
        assert_eq!(t.get(ExportKey::new(2, 9)), Some(&"y"));
        assert_eq!(t.remove(ExportKey::new(2, 9)), Some("y"));
        assert_eq!(t.remove(ExportKey::new(2, 9)), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn wildcards_match_what_they_name() {
        let t = table(&[(1, 0), (1, 1), (2, 1), (7, 0), (7, 254)]);
        assert_eq!(matches(&t, MAJOR_ANY, MINOR_ANY).len(), 5);
        assert_eq!(matches(&t, 7, MINOR_ANY), ["e7.0", "e7.254"]);
        assert_eq!(matches(&t, MAJOR_ANY, 1), ["e1.1", "e2.1"]);
        assert_eq!(matches(&t, 1, 1), ["e1.1"]);
        assert!(matches(&t, 3, MINOR_ANY).is_empty());
        assert!(matches(&t, 1, 5).is_empty());
        let resumed: Vec<usize> = t.matching(MAJOR_ANY, MINOR_ANY, 3).collect();
        assert_eq!(resumed, [3, 4]);
    }

    #[test]
    fn routes() {
        let t = table(&[(1, 0), (1, 1), (2, 0)]);
        assert_eq!(t.route(1, 1, ATA), Route::One(1));
        assert_eq!(t.route(1, 9, ATA), Route::None);
        assert_eq!(t.route(MAJOR_ANY, MINOR_ANY, CONFIG), Route::FanOut);
        assert_eq!(t.route(2, MINOR_ANY, CONFIG), Route::FanOut);
        assert_eq!(
            t.route(3, MINOR_ANY, CONFIG),
            Route::None,
            "a shelf not served"
        );
        assert_eq!(
            t.route(2, MINOR_ANY, ATA),
            Route::One(2),
            "one match: served"
        );
        assert_eq!(t.route(1, MINOR_ANY, ATA), Route::Ambiguous);
        assert_eq!(t.route(MAJOR_ANY, MINOR_ANY, ATA), Route::Ambiguous);
        let empty = table(&[]);
        assert_eq!(empty.route(MAJOR_ANY, MINOR_ANY, CONFIG), Route::None);
    }
}
