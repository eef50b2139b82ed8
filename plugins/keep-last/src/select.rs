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
#[inline]
pub(crate) fn select(
    entity: &[u32],
    created_ms: Option<&[i64]>,
    keep: u64,
    cutoff_ms: i64,
    mut delete: impl FnMut(usize),
) {
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let mut start = 0;
    while start < entity.len() {
        let end = group_end(entity, start);
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

/// Where the group that starts at `start` ends: the first index past it.
///
/// The one per-file loop, eight files per round so that a round's fixed
/// costs (the bounds test, and in wasm the runtime's interruption check) are
/// paid once per eight, and shaped per target for the code generator that
/// runs it, so neither side of the runtime benchmark is handicapped.
///
/// In wasm: its own function, with a compare chain. Cranelift does not
/// vectorize; on its own it keeps the chain's few values in registers
/// whatever the caller holds. (The fold below runs about 2x slower there.)
#[cfg(target_arch = "wasm32")]
#[inline(never)]
fn group_end(entity: &[u32], start: usize) -> usize {
    let group = entity[start];
    let mut end = start + 1;
    while let Some(chunk) = entity.get(end..end + 8) {
        if chunk[0] != group
            || chunk[1] != group
            || chunk[2] != group
            || chunk[3] != group
            || chunk[4] != group
            || chunk[5] != group
            || chunk[6] != group
            || chunk[7] != group
        {
            break;
        }
        end += 8;
    }
    group_tail(entity, end, group)
}

/// Natively: a branch-free fold, which LLVM turns into vector compares
/// (measured 1.6x faster than the chain above).
#[cfg(not(target_arch = "wasm32"))]
#[inline]
fn group_end(entity: &[u32], start: usize) -> usize {
    let group = entity[start];
    let mut end = start + 1;
    while let Some(chunk) = entity.get(end..end + 8) {
        if chunk.iter().fold(0, |diff, &e| diff | (e ^ group)) != 0 {
            break;
        }
        end += 8;
    }
    group_tail(entity, end, group)
}

/// The files of `group` from `end` on, one at a time: fewer than eight.
#[inline]
fn group_tail(entity: &[u32], mut end: usize, group: u32) -> usize {
    while end < entity.len() && entity[end] == group {
        end += 1;
    }
    end
}
