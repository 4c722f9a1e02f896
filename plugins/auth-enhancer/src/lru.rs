//! [`Lru`]: a map with a fixed number of entries that forgets the least recently seen one.
//!
//! Every key the plugin tracks (a user, an address, a network) is chosen by whoever sends the
//! events, so every table must have a ceiling, and what falls out when it is reached should be
//! what matters least: the entry not seen for the longest time. `std` has no such map, and a
//! crate for it (`lru`, `hashlink`) spends a heap node and two pointers per entry; this one is
//! small enough to own.
//!
//! # Layout
//!
//! Entries live in one dense `Vec` of slots; the recency list runs through them as `u32` slot
//! numbers (8 bytes per entry, not 16 for pointers, and no allocation per entry). An index
//! finds them: a `hashbrown::HashTable` (the table behind `std`'s `HashMap`) holding only the
//! `u32` slot number, 5 bytes per bucket with its control byte. A `HashMap<u64, u32>` would
//! store each key a second time and pad every bucket to 17 bytes: 25 MB more per million
//! entries, per table. Keys are already keyed hashes ([`crate::keys`]), so they serve as their
//! own hash. Removing an entry moves the last slot into its place, so the `Vec` never has
//! holes.

use hashbrown::HashTable;

/// "No slot" in the recency links.
const NIL: u32 = u32::MAX;

/// The largest capacity an [`Lru`] supports (slot numbers are `u32`, one value is [`NIL`]).
pub(crate) const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;

#[derive(Debug)]
struct Slot<V> {
    key: u64,
    /// Towards the most recently seen entry.
    prev: u32,
    /// Towards the least recently seen entry.
    next: u32,
    value: V,
}

/// A map from 64-bit keys to `V` holding at most `capacity` entries.
#[derive(Debug)]
pub(crate) struct Lru<V> {
    /// Slot numbers, hashed by their slot's key.
    index: HashTable<u32>,
    slots: Vec<Slot<V>>,
    /// The most recently seen entry.
    head: u32,
    /// The least recently seen entry: the next to be evicted.
    tail: u32,
    capacity: usize,
    evicted: u64,
}

impl<V> Lru<V> {
    /// An empty map for at most `capacity` entries (at least 1, at most [`MAX_CAPACITY`]).
    /// Memory is taken as entries arrive, not up front.
    pub(crate) fn new(capacity: usize) -> Self {
        Lru {
            index: HashTable::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.clamp(1, MAX_CAPACITY),
            evicted: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// How many entries were forgotten to make room for new ones.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The entry for `key`, without marking it seen.
    pub(crate) fn peek(&self, key: u64) -> Option<&V> {
        let i = self.find(key)?;
        self.slots.get(slot(i)).map(|s| &s.value)
    }

    /// The entry for `key`, marked most recently seen.
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let i = self.find(key)?;
        self.touch(i);
        self.slots.get_mut(slot(i)).map(|s| &mut s.value)
    }

    /// The entry for `key`, marked most recently seen; created with `make` if absent, in place
    /// of the least recently seen entry when the map is full (counted in [`Lru::evicted`]).
    pub(crate) fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(key) {
            Some(i) => {
                self.touch(i);
                i
            }
            None => self.insert_new(key, make()),
        };
        &mut self.slots[slot(i)].value
    }

    /// The least recently seen entry.
    pub(crate) fn peek_oldest(&self) -> Option<&V> {
        self.slots.get(slot(self.tail)).map(|s| &s.value)
    }

    /// Removes the least recently seen entry (not counted as an eviction: the caller decided
    /// it is no longer needed).
    pub(crate) fn remove_oldest(&mut self) {
        if self.tail != NIL {
            self.remove_slot(self.tail);
        }
    }

    /// Looks at up to `steps` entries, continuing from `cursor` round the table, and removes
    /// those for which `keep` returns false (not counted as evictions). `keep` may also trim
    /// the value. Called a few steps per event, this visits every entry once per
    /// `len / steps` events: a background sweep in O(1) per event, with no pause for a full
    /// scan.
    pub(crate) fn sweep(
        &mut self,
        cursor: &mut usize,
        steps: usize,
        mut keep: impl FnMut(&mut V) -> bool,
    ) {
        for _ in 0..steps {
            if self.slots.is_empty() {
                return;
            }
            if *cursor >= self.slots.len() {
                *cursor = 0;
            }
            let i = *cursor;
            if keep(&mut self.slots[i].value) {
                *cursor += 1;
            } else {
                // The last slot moves into `i`: look at `i` again next.
                self.remove_slot(u32::try_from(i).unwrap_or(NIL - 1));
            }
        }
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().map(|s| &s.value)
    }

    /// Bytes held by the table itself (slots and index), not counting what values own.
    pub(crate) fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<V>>() + self.index.allocation_size()
    }

    fn find(&self, key: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(key, |&i| slots.get(slot(i)).is_some_and(|s| s.key == key))
            .copied()
    }

    /// Indexes slot `i`, which must hold its key already.
    fn index_insert(&mut self, i: u32) {
        let slots = &self.slots;
        let key = slots[slot(i)].key;
        self.index
            .insert_unique(key, i, |&j| slots.get(slot(j)).map_or(0, |s| s.key));
    }

    /// Forgets that slot `i`, holding `key`, is indexed.
    fn index_remove(&mut self, key: u64, i: u32) {
        if let Ok(entry) = self.index.find_entry(key, |&j| j == i) {
            entry.remove();
        }
    }

    fn insert_new(&mut self, key: u64, value: V) -> u32 {
        if self.slots.len() >= self.capacity && self.tail != NIL {
            // Full: the least recently seen slot takes the new entry.
            let i = self.tail;
            let s = &mut self.slots[slot(i)];
            let old = std::mem::replace(&mut s.key, key);
            s.value = value;
            self.index_remove(old, i);
            self.index_insert(i);
            self.evicted += 1;
            self.touch(i);
            return i;
        }
        let i = u32::try_from(self.slots.len()).unwrap_or(NIL - 1);
        self.slots.push(Slot {
            key,
            prev: NIL,
            next: NIL,
            value,
        });
        self.index_insert(i);
        self.push_front(i);
        i
    }

    /// Makes slot `i` the most recently seen.
    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[slot(i)];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[slot(p)].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[slot(n)].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.head;
        {
            let s = &mut self.slots[slot(i)];
            s.prev = NIL;
            s.next = head;
        }
        match head {
            NIL => self.tail = i,
            h => self.slots[slot(h)].prev = i,
        }
        self.head = i;
    }

    fn remove_slot(&mut self, i: u32) {
        self.unlink(i);
        let key = self.slots[slot(i)].key;
        self.index_remove(key, i);
        let last = self.slots.len() - 1;
        self.slots.swap_remove(slot(i));
        if slot(i) != last {
            // The former last slot now sits at `i`: repoint its neighbours and its key.
            let (prev, next, moved) = {
                let s = &self.slots[slot(i)];
                (s.prev, s.next, s.key)
            };
            match prev {
                NIL => self.head = i,
                p => self.slots[slot(p)].next = i,
            }
            match next {
                NIL => self.tail = i,
                n => self.slots[slot(n)].prev = i,
            }
            let from = u32::try_from(last).unwrap_or(NIL - 1);
            if let Some(entry) = self.index.find_mut(moved, |&j| j == from) {
                *entry = i;
            }
        }
    }
}

fn slot(i: u32) -> usize {
    i as usize
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Checks links, index and order against a plain list, most recent first.
    fn check(lru: &Lru<u64>, model: &[(u64, u64)]) {
        assert_eq!(lru.len(), model.len());
        assert_eq!(lru.index.len(), model.len());
        for (key, _) in model {
            assert!(lru.find(*key).is_some());
        }
        let mut order = Vec::new();
        let mut i = lru.head;
        let mut prev = NIL;
        while i != NIL {
            let s = &lru.slots[slot(i)];
            assert_eq!(s.prev, prev);
            assert_eq!(lru.find(s.key), Some(i));
            order.push((s.key, s.value));
            prev = i;
            i = s.next;
        }
        assert_eq!(lru.tail, prev);
        assert_eq!(order, model);
    }

    #[test]
    fn matches_a_naive_model_under_random_operations() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for capacity in [1, 2, 3, 8] {
            let mut lru = Lru::new(capacity);
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut evicted = 0;
            for step in 0..5_000 {
                let key = rand(12);
                match rand(4) {
                    0 | 1 => {
                        *lru.get_or_insert_with(key, || 0) += step;
                        match model.iter().position(|(k, _)| *k == key) {
                            Some(p) => {
                                let (k, v) = model.remove(p);
                                model.insert(0, (k, v + step));
                            }
                            None => {
                                if model.len() == capacity {
                                    model.pop();
                                    evicted += 1;
                                }
                                model.insert(0, (key, step));
                            }
                        }
                    }
                    2 => {
                        let got = lru.get_mut(key).map(|v| *v);
                        let want = model.iter().position(|(k, _)| *k == key).map(|p| {
                            let e = model.remove(p);
                            model.insert(0, e);
                            e.1
                        });
                        assert_eq!(got, want);
                        assert_eq!(lru.peek(key).copied(), want);
                    }
                    _ => {
                        assert_eq!(lru.peek_oldest().copied(), model.last().map(|e| e.1));
                        lru.remove_oldest();
                        model.pop();
                    }
                }
                check(&lru, &model);
                assert_eq!(lru.evicted(), evicted);
            }
        }
    }

    #[test]
    fn a_sweep_removes_what_is_not_kept_and_keeps_the_links_right() {
        let mut lru = Lru::new(100);
        for k in 0..50 {
            *lru.get_or_insert_with(k, || k) += 0;
        }
        let mut cursor = 0;
        for _ in 0..30 {
            lru.sweep(&mut cursor, 3, |v| *v % 3 != 0);
        }
        // Most recent first: 49, 48, ... without the multiples of 3.
        let model: Vec<(u64, u64)> = (0..50)
            .rev()
            .filter(|k| k % 3 != 0)
            .map(|k| (k, k))
            .collect();
        check(&lru, &model);
        let len = lru.len();
        lru.sweep(&mut cursor, len, |v| {
            *v += 1;
            true
        });
        assert_eq!(lru.peek(49), Some(&50));
        assert_eq!(lru.peek(1), Some(&2));
        lru.sweep(&mut cursor, 1000, |_| false);
        check(&lru, &[]);
        lru.sweep(&mut cursor, 10, |_| false);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut lru = Lru::new(0);
        *lru.get_or_insert_with(1, || 1) += 0;
        *lru.get_or_insert_with(2, || 2) += 0;
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.evicted(), 1);
        assert_eq!(lru.peek(2), Some(&2));
        assert!(lru.table_bytes() > 0);
        lru.remove_oldest();
        lru.remove_oldest();
        assert_eq!(lru.len(), 0);
        assert_eq!(lru.values().count(), 0);
    }
}
