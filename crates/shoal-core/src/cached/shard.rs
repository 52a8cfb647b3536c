//! A small sharded map (a mutex per shard), for the per-session fences and touch states.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use crate::SessionId;

const SHARDS: usize = 32;

/// A `HashMap<SessionId, V>` split over [`SHARDS`] mutexes; values are cloned out.
#[derive(Debug)]
pub(super) struct ShardedMap<V> {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<SessionId, V>>>,
}

impl<V: Clone> Default for ShardedMap<V> {
    fn default() -> Self {
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl<V: Clone> ShardedMap<V> {
    fn shard(&self, id: &SessionId) -> std::sync::MutexGuard<'_, HashMap<SessionId, V>> {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, id: &SessionId) -> Option<V> {
        self.shard(id).get(id).cloned()
    }

    pub(super) fn insert(&self, id: SessionId, v: V) {
        self.shard(&id).insert(id, v);
    }

    /// Sets the value of `id` to `f(current)`.
    pub(super) fn upsert(&self, id: &SessionId, f: impl FnOnce(Option<&V>) -> V) {
        let mut shard = self.shard(id);
        let v = f(shard.get(id));
        shard.insert(id.clone(), v);
    }

    pub(super) fn remove(&self, id: &SessionId) -> Option<V> {
        self.shard(id).remove(id)
    }

    /// Keeps the entries for which `keep` holds.
    pub(super) fn retain(&self, mut keep: impl FnMut(&SessionId, &V) -> bool) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|k, v| keep(k, v));
        }
    }

    /// Calls `f` on every value.
    pub(super) fn for_each(&self, mut f: impl FnMut(&V)) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .for_each(&mut f);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map() {
        let m: ShardedMap<u32> = ShardedMap::default();
        for i in 0..100 {
            m.insert(SessionId::new(format!("s{i}")).unwrap(), i);
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.get(&SessionId::new("s7").unwrap()), Some(7));
        m.retain(|_, v| v % 2 == 0);
        assert_eq!(m.len(), 50);
        assert_eq!(m.remove(&SessionId::new("s8").unwrap()), Some(8));
        m.upsert(&SessionId::new("s8").unwrap(), |v| {
            v.copied().unwrap_or(100) + 1
        });
        assert_eq!(m.remove(&SessionId::new("s8").unwrap()), Some(101));
        let mut sum = 0;
        m.for_each(|v| sum += v);
        assert_eq!(sum, (0..100).filter(|v| v % 2 == 0).sum::<u32>() - 8);
    }
}
