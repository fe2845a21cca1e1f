//! A table's objects in insertion order (each by its id's hash), stored in
//! fixed-size chunks.
//!
//! A `Vec` that grows by doubling copies everything it holds at each
//! doubling, into fresh pages, on the WAL's apply thread, while every request
//! of the batch waits; a payment, its transaction and its events double
//! together (docs/performance.md, "Slow applies"). Here a push never moves what is stored: a full chunk
//! stays where it is and the next push starts a new one. Only the small
//! vector of chunk pointers still doubles (N / ORDER_CHUNK_IDS of them).
//!
//! The first chunk grows by doubling up to ORDER_CHUNK_IDS, so a table with
//! a handful of objects (rewards, endpoints) does not hold a whole chunk.
//!
//! An archived table (`Table::attach_archive`) lets go of the chunks wholly
//! below its first object in memory (`drop_below`): history keeps those
//! positions. Their place stays (an empty chunk), so positions never move.

use crate::config::ORDER_CHUNK_IDS;

/// An object's id hash (which finds its bucket, with its position) and its
/// `created`, as lists filter by it.
pub type Entry = (u64, i64);

#[derive(Default)]
pub struct Order {
    chunks: Vec<Vec<Entry>>,
    len: usize,
    /// Positions below this are let go of (`drop_below`): a multiple of ORDER_CHUNK_IDS.
    dropped: usize,
}

impl Order {
    /// An order whose first `base` positions are held elsewhere (a local
    /// checkpoint's archived objects): the next push lands at `base`.
    pub fn with_base(base: usize) -> Order {
        let dropped = base - base % ORDER_CHUNK_IDS;
        let mut chunks: Vec<Vec<Entry>> = (0..dropped / ORDER_CHUNK_IDS).map(|_| Vec::new()).collect();
        if base > dropped {
            // Stand-ins for the positions of the first chunk held elsewhere; never read.
            let mut first = Vec::with_capacity(ORDER_CHUNK_IDS);
            first.resize(base - dropped, (0, 0));
            chunks.push(first);
        }
        Order { chunks, len: base, dropped }
    }

    /// Lets go of the chunks wholly below `position`.
    pub fn drop_below(&mut self, position: usize) {
        let to = position.min(self.len) - position.min(self.len) % ORDER_CHUNK_IDS;
        for chunk in &mut self.chunks[self.dropped / ORDER_CHUNK_IDS..to / ORDER_CHUNK_IDS] {
            *chunk = Vec::new();
        }
        self.dropped = self.dropped.max(to);
    }

    /// The first position still held (`drop_below`).
    pub fn first_held(&self) -> usize {
        self.dropped
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends an entry; returns its position.
    pub fn push(&mut self, entry: Entry) -> usize {
        let at = self.len;
        if at.is_multiple_of(ORDER_CHUNK_IDS) && at > 0 {
            self.chunks.push(Vec::with_capacity(ORDER_CHUNK_IDS));
        }
        match self.chunks.last_mut() {
            Some(chunk) => chunk.push(entry),
            None => self.chunks.push(vec![entry]),
        }
        self.len += 1;
        at
    }

    /// The entry at `position`, if there is one.
    pub fn get(&self, position: usize) -> Option<Entry> {
        self.chunks.get(position / ORDER_CHUNK_IDS)?.get(position % ORDER_CHUNK_IDS).copied()
    }

    /// A copy of the entries at positions `range` (clamped to the length;
    /// `begin` must be at or past `first_held`).
    pub fn copy_range(&self, begin: usize, end: usize) -> Vec<Entry> {
        let end = end.min(self.len);
        debug_assert!(begin >= self.dropped || begin >= end, "positions {begin}.. were let go of");
        let mut out = Vec::with_capacity(end.saturating_sub(begin));
        let mut at = begin;
        while at < end {
            let (chunk, offset) = (at / ORDER_CHUNK_IDS, at % ORDER_CHUNK_IDS);
            let take = (ORDER_CHUNK_IDS - offset).min(end - at);
            out.extend_from_slice(&self.chunks[chunk][offset..offset + take]);
            at += take;
        }
        out
    }

    /// Makes room for the pointers of `additional` more entries' chunks (a
    /// chunk itself is allocated when the first entry lands in it).
    pub fn reserve(&mut self, additional: usize) {
        self.chunks.reserve((self.len + additional).div_ceil(ORDER_CHUNK_IDS).saturating_sub(self.chunks.len()));
    }

    /// Gives back the spare capacity of the chunk pointers and, when it is the
    /// only one, of the first chunk (a full chunk has none; the last one is
    /// left with its room, since the next push fills it).
    pub fn shrink_to_fit(&mut self) {
        self.chunks.shrink_to_fit();
        if let [only] = self.chunks.as_mut_slice() {
            only.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        (i as u64 * 7919, i as i64)
    }

    #[test]
    fn positions_and_ranges_across_chunks() {
        let mut order = Order::default();
        let n = ORDER_CHUNK_IDS * 2 + 7;
        order.reserve(n);
        for i in 0..n {
            assert_eq!(order.push(entry(i)), i);
        }
        assert_eq!(order.len(), n);
        assert_eq!(order.chunks.len(), 3);
        assert!(order.chunks[..2].iter().all(|c| c.len() == ORDER_CHUNK_IDS));
        for (begin, end) in [(0, 0), (0, 3), (ORDER_CHUNK_IDS - 2, ORDER_CHUNK_IDS + 2), (5, n), (n - 1, n + 10)] {
            let got = order.copy_range(begin, end);
            let want: Vec<Entry> = (begin..end.min(n)).map(entry).collect();
            assert_eq!(got, want, "range {begin}..{end}");
        }
        assert!(order.copy_range(n, n + 5).is_empty());
        assert_eq!(order.get(ORDER_CHUNK_IDS + 1), Some(entry(ORDER_CHUNK_IDS + 1)));
        assert_eq!(order.get(n), None);
    }

    #[test]
    fn chunks_below_the_archive_go_and_positions_stay() {
        let n = ORDER_CHUNK_IDS * 3 + 5;
        let mut order = Order::default();
        for i in 0..n {
            order.push(entry(i));
        }
        order.drop_below(ORDER_CHUNK_IDS * 2 + 1);
        assert_eq!(order.first_held(), ORDER_CHUNK_IDS * 2);
        assert!(order.chunks[..2].iter().all(|c| c.capacity() == 0));
        assert_eq!(order.get(ORDER_CHUNK_IDS), None);
        assert_eq!(order.get(ORDER_CHUNK_IDS * 2), Some(entry(ORDER_CHUNK_IDS * 2)));
        assert_eq!(order.copy_range(ORDER_CHUNK_IDS * 2, n), (ORDER_CHUNK_IDS * 2..n).map(entry).collect::<Vec<_>>());
        assert_eq!(order.push(entry(n)), n);

        for base in [0, 7, ORDER_CHUNK_IDS, ORDER_CHUNK_IDS * 2 + 3] {
            let mut order = Order::with_base(base);
            assert_eq!((order.len(), order.first_held()), (base, base - base % ORDER_CHUNK_IDS));
            for i in base..base + ORDER_CHUNK_IDS + 2 {
                assert_eq!(order.push(entry(i)), i);
            }
            assert_eq!(order.get(base + 1), Some(entry(base + 1)));
            let end = base + ORDER_CHUNK_IDS + 2;
            assert_eq!(order.copy_range(base, end), (base..end).map(entry).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_small_table_holds_no_whole_chunk() {
        let mut order = Order::default();
        for i in 0..3 {
            order.push(entry(i));
        }
        order.shrink_to_fit();
        assert!(order.chunks[0].capacity() < 16);
        order.push(entry(3));
        assert_eq!(order.copy_range(0, 4), (0..4).map(entry).collect::<Vec<_>>());
    }
}
