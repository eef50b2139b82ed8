//! keep-last's selection over plain columns, with no dependency: the plugin
//! runs it on the columns the host lends, and the runtime benchmark compiles
//! this same file natively as its peer (`host/benches/runtime.rs`), so the
//! two measure the same code.

/// Calls `delete(i)` for each file `i` keep-last lets go, in order.
///
/// `entity[i]` is file `i`'s entity; files arrive grouped by entity, newest
/// first within each (the host's order; the files of no entity form one
/// group). A file goes when at least `keep` newer files of its entity come
/// before it and, when `created_ms` is given, it was created at or before
/// `cutoff_ms`.
///
/// The loop is shaped for the code generator that runs it: one tight scan
/// per entity for where it ends, then a plain range of the files past the
/// first `keep`, so no per-file branch but the scan's compare.
#[inline]
pub(crate) fn select(
    entity: &[u32],
    created_ms: Option<&[i64]>,
    keep: u64,
    cutoff_ms: i64,
    mut delete: impl FnMut(usize),
) {
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let n = entity.len();
    let mut start = 0;
    while start < n {
        let group = entity[start];
        let mut end = start + 1;
        while end < n && entity[end] == group {
            end += 1;
        }
        let from = start.saturating_add(keep).min(end);
        match created_ms {
            None => (from..end).for_each(&mut delete),
            Some(created) => (from..end)
                .filter(|&i| created.get(i).is_some_and(|&c| c <= cutoff_ms))
                .for_each(&mut delete),
        }
        start = end;
    }
}
