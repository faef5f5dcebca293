//! An arena's bookkeeping, as pure logic over offsets: where the next push lands, which
//! pages must become accessible, which are pending, published or released. No syscalls
//! and no `unsafe` here; [`super::shared`] turns the answers into `mprotect`s.
//!
//! Invariants owned here:
//! - records are sorted by offset and never overlap; a record's offset never changes;
//! - `published_end <= bump <= committed_end` once a push has committed its pages, with
//!   `published_end` and `committed_end` page-aligned: pages below `published_end` are
//!   published (R|X) or released, pages in `[published_end, committed_end)` are R|W and
//!   hold only pending bytes, pages above are still reserved (`PROT_NONE`);
//! - nothing is ever placed below `published_end`, so a page that held published code is
//!   never writable again;
//! - a page is released exactly when the last record overlapping it retires (import slots
//!   never retire, so a page holding one is never released).

use allocator_api2::vec::Vec;

use super::shared::RecAlloc;
use crate::error::Error;
use crate::profiling::{CodeSym, NameRef, Names, Registration};
use crate::registry::Storage;
use crate::sys::PAGE_SIZE;

/// Where a function starts: 16-byte alignment, as compilers align functions.
pub(crate) const FN_ALIGN: usize = 16;
/// Where an import slot starts: its natural alignment.
pub(crate) const SLOT_ALIGN: usize = 8;
/// The longest function an arena takes (`len` shares a `u32` with three flag bits).
pub(crate) const MAX_FN_LEN: usize = (1 << 29) - 1;

const LEN_MASK: u32 = (1 << 29) - 1;
const PUBLISHED: u32 = 1 << 29;
const RETIRED: u32 = 1 << 30;
const IMPORT: u32 = 1 << 31;

/// Where a record is in its one-way life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecState {
    /// Pushed, on R|W pages, not callable.
    Pending,
    /// Hashed and on R|X pages: callable through wildx.
    Published,
    /// No longer enterable through wildx.
    Retired,
}

/// One function or import slot: 24 bytes (offset, hash, length with flags; its live
/// entries are counted outside the table, in the arena's `Gates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    /// Offset from the arena's base.
    pub(crate) off: usize,
    /// FNV-1a 64 of the record's bytes, recorded at publish.
    pub(crate) hash: u64,
    /// Length (low 29 bits) and the PUBLISHED, RETIRED, IMPORT flags.
    meta: u32,
}

impl Rec {
    fn new(off: usize, len: usize, import: bool) -> Rec {
        debug_assert!(len <= MAX_FN_LEN);
        Rec { off, hash: 0, meta: len as u32 | if import { IMPORT } else { 0 } }
    }

    pub(crate) const fn len(&self) -> usize {
        (self.meta & LEN_MASK) as usize
    }

    pub(crate) const fn end(&self) -> usize {
        self.off + self.len()
    }

    pub(crate) const fn is_import(&self) -> bool {
        self.meta & IMPORT != 0
    }

    pub(crate) const fn state(&self) -> RecState {
        if self.meta & RETIRED != 0 {
            RecState::Retired
        } else if self.meta & PUBLISHED != 0 {
            RecState::Published
        } else {
            RecState::Pending
        }
    }

    fn set_retired(&mut self, retired: bool) {
        if retired {
            self.meta |= RETIRED;
        } else {
            self.meta &= !RETIRED;
        }
    }
}

const fn round_up(n: usize, to: usize) -> usize {
    // Callers keep `n` below the arena's capacity, itself below isize::MAX.
    (n + to - 1) & !(to - 1)
}

const fn round_down(n: usize, to: usize) -> usize {
    n & !(to - 1)
}

/// The bookkeeping of one arena. See the module docs for its invariants.
pub(crate) struct Table {
    recs: Vec<Rec, RecAlloc>,
    /// Index of the first record not yet published.
    first_pending: usize,
    /// Offset of the next free byte.
    bump: usize,
    /// Offset below which everything is published or released (page-aligned).
    published_end: usize,
    /// Offset below which pages are accessible (page-aligned).
    committed_end: usize,
    /// The reservation's length (page-aligned).
    capacity: usize,
    /// Names given to pending functions by `push_named`, until they are published.
    names: Names,
    /// Which pending record each stored name belongs to, by index (ascending).
    named: Vec<(usize, NameRef), Storage>,
    /// Published batches with something registered for them (a gdb object): the index
    /// one past the batch's last record, its live functions, and the registration.
    batches: Vec<Batch, Storage>,
}

/// A published batch whose profiler registration lives until its last function retires.
struct Batch {
    end: usize,
    live: usize,
    registration: Registration,
}

/// Where a push will land, before anything is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Offset of the first byte.
    pub(crate) start: usize,
    /// Offset one past the last byte.
    pub(crate) end: usize,
    /// Pages to make accessible first, as `[from, to)` offsets (empty if none).
    pub(crate) commit: (usize, usize),
}

impl Table {
    /// An empty table for a reservation of `capacity` bytes, with room for one record
    /// per 48 bytes of it (a 40-byte function takes 48), at least a page of records and at
    /// most 384 KiB of them: untouched pages of the table cost address space only, and
    /// past that it doubles.
    ///
    /// # Errors
    /// [`Error::RegistryStorage`] if the table's `mmap` fails.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Result<Table, Error> {
        Table::with_alloc(capacity, RecAlloc::default())
    }

    /// [`Table::new`] with the records' storage from `alloc` (an inline block first).
    ///
    /// # Errors
    /// As [`Table::new`].
    pub(crate) fn with_alloc(capacity: usize, alloc: RecAlloc) -> Result<Table, Error> {
        let mut recs = Vec::new_in(alloc);
        let per_page = PAGE_SIZE / core::mem::size_of::<Rec>();
        let initial = (capacity / 48).clamp(per_page, 16 * 1024).next_multiple_of(per_page);
        recs.try_reserve_exact(initial).map_err(|_| Error::RegistryStorage)?;
        Ok(Table {
            recs,
            first_pending: 0,
            bump: 0,
            published_end: 0,
            committed_end: 0,
            capacity,
            names: Names::new(),
            named: Vec::new_in(Storage),
            batches: Vec::new_in(Storage),
        })
    }

    /// The offset the next record of alignment `align` would start at.
    #[inline]
    pub(crate) fn next_offset(&self, align: usize) -> usize {
        round_up(self.bump.max(self.published_end), align)
    }

    /// Where `len` bytes aligned to `align` would go, and which pages they need. Changes
    /// nothing.
    ///
    /// # Errors
    /// [`Error::ZeroLength`], [`Error::LengthOverflow`] past [`MAX_FN_LEN`],
    /// [`Error::ArenaFull`] past the reservation.
    #[inline]
    pub(crate) fn place(&self, len: usize, align: usize) -> Result<Placement, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if len > MAX_FN_LEN {
            return Err(Error::LengthOverflow);
        }
        let start = self.next_offset(align);
        let available = self.capacity - self.bump.min(self.capacity);
        let full = Error::ArenaFull { needed: start.saturating_add(len) - self.bump, available };
        if start > self.capacity {
            return Err(full);
        }
        let end = start.checked_add(len).filter(|&end| end <= self.capacity).ok_or(full)?;
        let to = round_up(end, PAGE_SIZE);
        let commit = if to > self.committed_end { (self.committed_end, to) } else { (to, to) };
        Ok(Placement { start, end, commit })
    }

    /// Records that pages up to `to` are accessible now.
    pub(crate) fn committed(&mut self, to: usize) {
        self.committed_end = self.committed_end.max(to);
    }

    /// Makes room for one more record. Fails if the table must grow and its `mmap`
    /// fails; nothing changes then. An arena holds fewer than `u32::MAX` records (ids carry a `u32` index).
    #[inline]
    pub(crate) fn reserve_one(&mut self) -> Result<(), Error> {
        if self.recs.len() >= u32::MAX as usize {
            return Err(Error::ArenaFull { needed: 1, available: 0 });
        }
        if self.recs.len() == self.recs.capacity() {
            // Double, to whole pages: the storage maps whole pages anyway, and each growth
            // is an mremap (no copy), often a move; doubling keeps them logarithmic and the
            // slack at most 24 bytes a record.
            let per_page = PAGE_SIZE / core::mem::size_of::<Rec>();
            let want = (self.recs.len() * 2).max(per_page).next_multiple_of(per_page);
            return self.recs.try_reserve_exact(want - self.recs.len()).map_err(|_| Error::RegistryStorage);
        }
        self.recs.try_reserve(1).map_err(|_| Error::RegistryStorage)
    }

    /// Stores `name` for the next record, to be attached by [`Table::add`]. Nothing is
    /// attached if the push then fails.
    ///
    /// # Errors
    /// [`Error::Os`] if the name store cannot grow.
    pub(crate) fn prepare_name(&mut self, name: &str, addr: usize) -> Result<NameRef, Error> {
        self.named.try_reserve(1).map_err(|_| Error::RegistryStorage)?;
        self.names.push(Some(name), addr)
    }

    /// Adds a pending record at `placement` (after [`Table::reserve_one`], and
    /// [`Table::prepare_name`] for a named one); returns its index.
    #[inline]
    pub(crate) fn add(&mut self, placement: Placement, import: bool, name: Option<NameRef>) -> usize {
        debug_assert!(placement.start >= self.next_offset(1) && placement.end <= self.committed_end);
        self.recs.push(Rec::new(placement.start, placement.end - placement.start, import));
        self.bump = placement.end;
        let index = self.recs.len() - 1;
        if let Some(name) = name {
            // Cannot fail: `prepare_name` reserved the room.
            self.named.push((index, name));
        }
        index
    }

    /// The functions of the published `range` as the profilers want them, with the bytes
    /// `bytes(off, len)` gives.
    pub(crate) fn syms<'t>(
        &'t self,
        range: core::ops::Range<usize>,
        bytes: impl Fn(usize, usize) -> &'t [u8] + Clone + 't,
    ) -> impl Iterator<Item = CodeSym<'t>> + Clone + 't {
        let named = &self.named;
        let names = &self.names;
        range.filter(|&i| !self.recs[i].is_import()).map(move |i| {
            let rec = &self.recs[i];
            let name = named.binary_search_by_key(&i, |&(index, _)| index).ok().map(|at| names.get(named[at].1));
            CodeSym { code: bytes(rec.off, rec.len()), name }
        })
    }

    /// After a publish: forgets the pending names, and keeps the batch's registration
    /// (if it holds anything) until its functions retire.
    pub(crate) fn batch_published(&mut self, range: core::ops::Range<usize>, registration: Registration) {
        self.named.clear();
        self.names.clear();
        if registration.is_empty() {
            return;
        }
        let live = self.recs[range.clone()].iter().filter(|r| !r.is_import()).count();
        // Without room to keep it, drop it now: gdb loses the batch's names, nothing
        // else changes.
        if live == 0 || self.batches.try_reserve(1).is_err() {
            crate::profiling::code_retired(registration);
            return;
        }
        self.batches.push(Batch { end: range.end, live, registration });
    }

    /// Function `index` retired: returns its batch's registration if it was the last.
    pub(crate) fn batch_retired(&mut self, index: usize) -> Option<Registration> {
        let at = self.batches.partition_point(|b| b.end <= index);
        let batch = self.batches.get_mut(at)?;
        batch.live -= 1;
        (batch.live == 0).then(|| core::mem::take(&mut self.batches[at].registration))
    }

    /// Every registration still held (the arena is going away).
    pub(crate) fn take_registrations(&mut self) -> impl Iterator<Item = Registration> + '_ {
        self.batches.drain(..).map(|b| b.registration)
    }

    /// The pending bytes' pages, `[from, to)`, or `None` if nothing is pending.
    pub(crate) fn pending_pages(&self) -> Option<(usize, usize)> {
        (self.first_pending < self.recs.len()).then(|| (self.published_end, round_up(self.bump, PAGE_SIZE)))
    }

    /// The pending records, to hash before their pages are sealed.
    pub(crate) fn pending_mut(&mut self) -> &mut [Rec] {
        &mut self.recs[self.first_pending..]
    }

    /// Marks every pending record published once its pages (up to `to`) are R|X. Returns
    /// the index range that was published.
    pub(crate) fn published(&mut self, to: usize) -> core::ops::Range<usize> {
        let range = self.first_pending..self.recs.len();
        for rec in &mut self.recs[range.clone()] {
            rec.meta |= PUBLISHED;
        }
        self.first_pending = self.recs.len();
        self.published_end = to;
        self.bump = self.bump.max(to);
        range
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&Rec> {
        self.recs.get(index)
    }

    /// The index of the record starting exactly at `off`.
    pub(crate) fn index_at(&self, off: usize) -> Option<usize> {
        self.recs.binary_search_by(|r| r.off.cmp(&off)).ok()
    }

    pub(crate) fn records(&self) -> &[Rec] {
        &self.recs
    }

    pub(crate) fn published_end(&self) -> usize {
        self.published_end
    }

    pub(crate) fn committed_end(&self) -> usize {
        self.committed_end
    }

    /// Whether the page at offset `page` has records and all of them are retired (it is
    /// then released).
    pub(crate) fn page_released(&self, page: usize) -> bool {
        let end = page + PAGE_SIZE;
        let first = self.recs.partition_point(|r| r.end() <= page);
        let mut any = false;
        for rec in self.recs[first..].iter().take_while(|r| r.off < end) {
            if rec.state() != RecState::Retired {
                return false;
            }
            any = true;
        }
        any
    }

    /// Retires record `index` (published, not an import) and returns the pages that this
    /// leaves with only retired records, `[from, to)` (maybe empty): the caller releases
    /// them, or calls [`Table::unretire`] if it cannot.
    pub(crate) fn retire(&mut self, index: usize) -> (usize, usize) {
        let rec = &mut self.recs[index];
        rec.set_retired(true);
        let (off, end) = (rec.off, rec.end());
        let mut from = round_down(off, PAGE_SIZE);
        let mut to = round_up(end, PAGE_SIZE);
        if from < to && !self.page_released(from) {
            from += PAGE_SIZE;
        }
        if from < to && !self.page_released(to - PAGE_SIZE) {
            to -= PAGE_SIZE;
        }
        (from, to.max(from))
    }

    /// Undoes [`Table::retire`] when the pages could not be released.
    pub(crate) fn unretire(&mut self, index: usize) {
        self.recs[index].set_retired(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(t: &mut Table, len: usize, align: usize, import: bool) -> (usize, Placement) {
        let p = t.place(len, align).unwrap();
        t.committed(p.commit.1);
        t.reserve_one().unwrap();
        (t.add(p, import, None), p)
    }

    #[test]
    fn pushes_are_aligned_and_commit_pages_as_needed() {
        let mut t = Table::new(4 * PAGE_SIZE).unwrap();
        let (a, pa) = push(&mut t, 40, FN_ALIGN, false);
        assert_eq!((a, pa.start, pa.end, pa.commit), (0, 0, 40, (0, PAGE_SIZE)));
        let (_, pb) = push(&mut t, 40, FN_ALIGN, false);
        assert_eq!((pb.start, pb.commit.0 == pb.commit.1), (48, true));
        let (_, ps) = push(&mut t, 8, SLOT_ALIGN, true);
        assert_eq!(ps.start, 88);
        assert_eq!(t.next_offset(FN_ALIGN), 96);
        let (_, big) = push(&mut t, 2 * PAGE_SIZE, FN_ALIGN, false);
        assert_eq!((big.start, big.commit), (96, (PAGE_SIZE, 3 * PAGE_SIZE)));
    }

    #[test]
    fn refusals_change_nothing() {
        let mut t = Table::new(PAGE_SIZE).unwrap();
        assert_eq!(t.place(0, FN_ALIGN), Err(Error::ZeroLength));
        assert_eq!(t.place(MAX_FN_LEN + 1, FN_ALIGN), Err(Error::LengthOverflow));
        assert_eq!(
            t.place(PAGE_SIZE + 1, FN_ALIGN),
            Err(Error::ArenaFull { needed: PAGE_SIZE + 1, available: PAGE_SIZE })
        );
        push(&mut t, 4000, FN_ALIGN, false);
        assert_eq!(t.place(100, FN_ALIGN), Err(Error::ArenaFull { needed: 100, available: 96 }));
        assert_eq!(t.next_offset(FN_ALIGN), 4000);
        assert!(t.place(96, FN_ALIGN).is_ok());
    }

    #[test]
    fn publishing_moves_on_to_a_fresh_page() {
        let mut t = Table::new(8 * PAGE_SIZE).unwrap();
        assert_eq!(t.pending_pages(), None);
        push(&mut t, 40, FN_ALIGN, false);
        push(&mut t, 40, FN_ALIGN, false);
        assert_eq!(t.pending_pages(), Some((0, PAGE_SIZE)));
        assert_eq!(t.published(PAGE_SIZE), 0..2);
        assert_eq!(t.pending_pages(), None);
        assert_eq!(t.get(1).unwrap().state(), RecState::Published);
        let (_, p) = push(&mut t, 40, FN_ALIGN, false);
        assert_eq!((p.start, p.commit), (PAGE_SIZE, (PAGE_SIZE, 2 * PAGE_SIZE)));
        assert_eq!(t.pending_pages(), Some((PAGE_SIZE, 2 * PAGE_SIZE)));
    }

    #[test]
    fn a_page_is_released_when_its_last_record_retires() {
        let mut t = Table::new(8 * PAGE_SIZE).unwrap();
        // a: [0, 40); b: [48, 48 + 2 pages) straddles pages 0..3; c on page 2.
        push(&mut t, 40, FN_ALIGN, false);
        push(&mut t, 2 * PAGE_SIZE, FN_ALIGN, false);
        push(&mut t, 40, FN_ALIGN, false);
        t.published(3 * PAGE_SIZE);
        // Retiring b frees only its middle page: page 0 holds a, page 2 holds c.
        assert_eq!(t.retire(1), (PAGE_SIZE, 2 * PAGE_SIZE));
        assert_eq!(t.retire(0), (0, PAGE_SIZE));
        assert_eq!(t.retire(2), (2 * PAGE_SIZE, 3 * PAGE_SIZE));
        assert!(t.page_released(0) && t.page_released(2 * PAGE_SIZE));
    }

    #[test]
    fn import_slots_keep_their_page() {
        let mut t = Table::new(2 * PAGE_SIZE).unwrap();
        push(&mut t, 40, FN_ALIGN, false);
        push(&mut t, 8, SLOT_ALIGN, true);
        t.published(PAGE_SIZE);
        assert_eq!(t.retire(0), (PAGE_SIZE, PAGE_SIZE), "the slot's page stays");
        t.unretire(0);
        assert_eq!(t.get(0).unwrap().state(), RecState::Published);
        assert_eq!(t.index_at(40), Some(1));
        assert_eq!(t.index_at(41), None);
    }
}
