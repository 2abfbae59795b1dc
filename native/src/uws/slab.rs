//! A generational slab: small integer keys for values that C code refers to
//! through a `void *` it may hand back after the value is gone.
//!
//! uWS keeps the user data of `onData`/`onAborted` until it decides to drop
//! the handler, which it does not report. A key made of (generation, index)
//! lets a late callback find out that its entry was removed (or reused)
//! instead of dereferencing freed memory.

/// A key: the entry's generation in the high 32 bits, its index in the low
/// 32. Never 0 (generations start at 1), so it is never a NULL pointer.
pub type Key = u64;

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::new()
    }
}

impl<T> Slab<T> {
    pub const fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            entry.value = Some(value);
            return key(entry.generation, index);
        }
        let index = u32::try_from(self.entries.len()).expect("slab full");
        self.entries.push(Entry {
            generation: 1,
            value: Some(value),
        });
        key(1, index)
    }

    fn entry(&self, k: Key) -> Option<&Entry<T>> {
        let (generation, index) = split(k);
        self.entries
            .get(index as usize)
            .filter(|e| e.generation == generation && e.value.is_some())
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    pub fn get(&self, k: Key) -> Option<&T> {
        self.entry(k).and_then(|e| e.value.as_ref())
    }

    pub fn get_mut(&mut self, k: Key) -> Option<&mut T> {
        let (generation, index) = split(k);
        self.entries
            .get_mut(index as usize)
            .filter(|e| e.generation == generation)
            .and_then(|e| e.value.as_mut())
    }

    pub fn contains(&self, k: Key) -> bool {
        self.entry(k).is_some()
    }

    /// Removes and returns the value; the key (and any copy of it) is dead
    /// from now on, even once the index is reused.
    pub fn remove(&mut self, k: Key) -> Option<T> {
        let (generation, index) = split(k);
        let entry = self.entries.get_mut(index as usize)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1).max(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }
}

fn key(generation: u32, index: u32) -> Key {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(k: Key) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut s = Slab::new();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(a), Some(&"a"));
        *s.get_mut(b).unwrap() = "B";
        assert_eq!(s.remove(b), Some("B"));
        assert_eq!(s.remove(b), None);
        assert_eq!(s.get(b), None);
        assert_eq!(s.len(), 1);
        assert!(s.contains(a));
        assert_eq!(s.values().collect::<Vec<_>>(), vec![&"a"]);
    }

    #[test]
    fn stale_keys_do_not_reach_reused_slots() {
        let mut s = Slab::new();
        let a = s.insert(1);
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(2);
        assert_eq!(a as u32, b as u32, "index reused");
        assert_ne!(a, b, "generation differs");
        assert_eq!(s.get(a), None);
        assert_eq!(s.get_mut(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&2));
    }

    #[test]
    fn unknown_keys() {
        let mut s: Slab<u8> = Slab::new();
        assert_eq!(s.get(0), None);
        assert_eq!(s.remove(12345 << 32 | 7), None);
        assert!(s.is_empty());
    }

    #[test]
    fn generation_wraps_but_never_zero() {
        let mut s = Slab::new();
        let k = s.insert(0u8);
        s.entries[0].generation = u32::MAX;
        let k = (k & 0xffff_ffff) | (u64::from(u32::MAX) << 32);
        assert_eq!(s.remove(k), Some(0));
        assert_eq!(s.entries[0].generation, 1);
        assert_ne!(s.insert(1), 0);
    }
}
