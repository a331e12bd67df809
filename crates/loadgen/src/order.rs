//! Which of a publisher's numbered messages (the loadgen seq in every payload) a receiver got:
//! the basis of loss, duplicate and order counts when messages can come late, twice, or from a
//! replay after a reconnect.

use std::collections::BTreeSet;

/// The loadgen seqs one receiver (a subscriber, a channel member) got.
#[derive(Default)]
pub struct Received {
    /// Every seq below this one arrived.
    through: u64,
    /// Seqs at or above `through` that arrived (after a hole).
    beyond: BTreeSet<u64>,
}

/// How a message arrived, by its loadgen seq.
#[derive(Debug, PartialEq)]
pub enum Arrival {
    /// Higher than any before it.
    InOrder,
    /// New, but lower than one that came before it.
    OutOfOrder,
    /// Already there.
    Duplicate,
}

impl Received {
    /// Records `seq` and says how it came.
    pub fn note(&mut self, seq: u64) -> Arrival {
        if self.has(seq) {
            return Arrival::Duplicate;
        }
        let late = self.highest().is_some_and(|highest| seq < highest);
        if seq == self.through {
            self.through += 1;
            while self.beyond.remove(&self.through) {
                self.through += 1;
            }
        } else {
            self.beyond.insert(seq);
        }
        if late {
            Arrival::OutOfOrder
        } else {
            Arrival::InOrder
        }
    }

    /// The highest seq that arrived: the last one after a hole, or else the last of `0..through`.
    pub fn highest(&self) -> Option<u64> {
        self.beyond.last().copied().or(self.through.checked_sub(1))
    }

    /// How many seqs arrived with no hole before them (`0..through`).
    pub fn through(&self) -> u64 {
        self.through
    }

    /// Whether `seq` arrived.
    pub fn has(&self, seq: u64) -> bool {
        seq < self.through || self.beyond.contains(&seq)
    }

    /// How many distinct seqs arrived.
    pub fn count(&self) -> u64 {
        self.through + self.beyond.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_told_apart_by_loadgen_seq() {
        let mut received = Received::default();
        assert_eq!(received.note(0), Arrival::InOrder);
        assert_eq!(received.note(2), Arrival::InOrder);
        assert_eq!(received.note(1), Arrival::OutOfOrder);
        assert_eq!(received.note(2), Arrival::Duplicate);
        assert_eq!((received.through(), received.count()), (3, 3));
        assert_eq!(received.note(5), Arrival::InOrder);
        assert!(received.has(5) && !received.has(4));
        assert_eq!(received.highest(), Some(5));
        assert_eq!(Received::default().highest(), None);
    }
}
