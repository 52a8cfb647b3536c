//! Provisional seqs: what [`Resilient`](super::Resilient) hands out for frames appended to a
//! session held only by the primary while the primary is out, and their final seqs once the
//! journal is drained.

use std::collections::{HashMap, VecDeque};

use crate::SessionId;

/// Provisional seqs start above this value, far beyond any seq a store assigns, and below
/// 2^53 so they stay exact in JavaScript and Lua numbers.
pub const PROVISIONAL_SEQ_BASE: u64 = 1 << 52;

/// Provisional seqs stay below this value (2^53); larger seqs (e.g. `u64::MAX` as "after
/// everything") are never treated as provisional.
pub const PROVISIONAL_SEQ_END: u64 = 1 << 53;

/// Whether `seq` is a provisional seq (handed out during an outage): in
/// `PROVISIONAL_SEQ_BASE + 1 .. PROVISIONAL_SEQ_END`.
pub fn is_provisional(seq: u64) -> bool {
    seq > PROVISIONAL_SEQ_BASE && seq < PROVISIONAL_SEQ_END
}

/// Bounded map from `(session, provisional seq)` to final seq; the oldest mappings are
/// forgotten first.
#[derive(Debug)]
pub(crate) struct SeqMap {
    map: HashMap<SessionId, HashMap<u64, u64>>,
    fifo: VecDeque<(SessionId, u64)>,
    capacity: usize,
}

impl SeqMap {
    pub(crate) fn new(capacity: usize) -> Self {
        SeqMap {
            map: HashMap::new(),
            fifo: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn insert(&mut self, id: &SessionId, provisional: u64, final_seq: u64) {
        if self.capacity == 0 {
            return;
        }
        while self.fifo.len() >= self.capacity {
            let Some((old_id, old)) = self.fifo.pop_front() else {
                break;
            };
            if let Some(m) = self.map.get_mut(&old_id) {
                m.remove(&old);
                if m.is_empty() {
                    self.map.remove(&old_id);
                }
            }
        }
        self.map
            .entry(id.clone())
            .or_default()
            .insert(provisional, final_seq);
        self.fifo.push_back((id.clone(), provisional));
    }

    pub(crate) fn get(&self, id: &SessionId, provisional: u64) -> Option<u64> {
        self.map.get(id)?.get(&provisional).copied()
    }

    pub(crate) fn forget_session(&mut self, id: &SessionId) {
        self.map.remove(id);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_forgets_the_oldest() {
        let a = SessionId::new("a").expect("id");
        let b = SessionId::new("b").expect("id");
        let mut m = SeqMap::new(2);
        let p = PROVISIONAL_SEQ_BASE;
        m.insert(&a, p + 1, 7);
        m.insert(&b, p + 2, 3);
        assert_eq!(m.get(&a, p + 1), Some(7));
        m.insert(&a, p + 3, 8);
        assert_eq!(m.get(&a, p + 1), None, "oldest forgotten");
        assert_eq!(m.get(&b, p + 2), Some(3));
        assert_eq!(m.len(), 2);
        m.forget_session(&a);
        assert_eq!(m.get(&a, p + 3), None);
        assert!(is_provisional(p + 1));
        assert!(!is_provisional(p));
        assert!(!is_provisional(12));
        assert!(!is_provisional(u64::MAX));
        assert!(!is_provisional(PROVISIONAL_SEQ_END));
    }
}
