//! A bounded map keyed by strings that evicts in insertion order (FIFO).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Holds at most `capacity` entries; inserting a new key into a full cache
/// evicts the oldest inserted key. Lookups do not change the order, so the
/// cost of a hit is one hash lookup. A capacity of 0 disables caching.
#[derive(Debug)]
pub struct FifoCache<V> {
    map: HashMap<Arc<str>, V>,
    /// Exactly the keys of `map`, oldest first.
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl<V> FifoCache<V> {
    pub fn new(capacity: usize) -> Self {
        FifoCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    /// Inserts or replaces `key`; a replaced key keeps its age.
    pub fn insert(&mut self, key: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some(slot) = self.map.get_mut(key) {
            *slot = value;
            return;
        }
        while self.map.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&oldest);
        }
        let key: Arc<str> = Arc::from(key);
        self.order.push_back(Arc::clone(&key));
        self.map.insert(key, value);
    }

    /// Keeps only the entries for which `keep` returns true; returns how many
    /// were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, value| keep(value));
        if self.map.len() != before {
            let map = &self.map;
            self.order.retain(|key| map.contains_key(key));
        }
        before - self.map.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_insertion_first() {
        let mut cache = FifoCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        assert_eq!(cache.get("a"), Some(&1));
        cache.insert("c", 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), Some(&2));
        assert_eq!(cache.get("c"), Some(&3));
    }

    #[test]
    fn replacing_a_key_keeps_its_age() {
        let mut cache = FifoCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("a", 10);
        assert_eq!(cache.len(), 2);
        cache.insert("c", 3);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), Some(&2));
    }

    #[test]
    fn retain_keeps_order_in_sync() {
        let mut cache = FifoCache::new(3);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(key, i);
        }
        assert_eq!(cache.retain(|&v| v != 0), 1);
        cache.insert("d", 3);
        assert_eq!(cache.len(), 3);
        cache.insert("e", 4);
        assert_eq!(cache.get("b"), None, "b is now the oldest");
        assert_eq!(cache.get("c"), Some(&2));
        assert_eq!(cache.order.len(), cache.map.len());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = FifoCache::new(0);
        cache.insert("a", 1);
        assert!(cache.is_empty());
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn clear_empties_everything() {
        let mut cache = FifoCache::new(4);
        cache.insert("a", 1);
        cache.clear();
        assert!(cache.is_empty());
        assert!(cache.order.is_empty());
    }
}
