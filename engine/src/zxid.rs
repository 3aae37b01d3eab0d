//! Transaction ids: `zxid = (epoch << 32) | counter`.

use std::fmt;

/// A leader epoch: the high 32 bits of a zxid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u32);

/// A ZooKeeper transaction id. Totally ordered; `Zxid::ZERO` precedes every txn.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(u64);

impl Zxid {
    /// The zxid before any txn.
    pub const ZERO: Zxid = Zxid(0);

    pub const fn new(epoch: Epoch, counter: u32) -> Self {
        Zxid(((epoch.0 as u64) << 32) | counter as u64)
    }

    pub const fn from_u64(raw: u64) -> Self {
        Zxid(raw)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The zxid as ZooKeeper's wire and Stat fields carry it (a signed long).
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub const fn epoch(self) -> Epoch {
        Epoch((self.0 >> 32) as u32)
    }

    pub const fn counter(self) -> u32 {
        self.0 as u32
    }

    /// The next zxid in the same epoch, or `None` if the counter is exhausted (ZooKeeper then
    /// forces a new election to start a new epoch).
    pub const fn next(self) -> Option<Zxid> {
        match self.counter().checked_add(1) {
            Some(counter) => Some(Zxid::new(self.epoch(), counter)),
            None => None,
        }
    }
}

impl fmt::Debug for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zxid_splits_into_epoch_and_counter() {
        let z = Zxid::new(Epoch(3), 7);
        assert_eq!(z.as_u64(), (3 << 32) | 7);
        assert_eq!(z.epoch(), Epoch(3));
        assert_eq!(z.counter(), 7);
        assert_eq!(z.next(), Some(Zxid::new(Epoch(3), 8)));
        assert_eq!(Zxid::new(Epoch(1), u32::MAX).next(), None);
    }
}
