//! A retention plugin for the contract tests. Its `mode` parameter picks one
//! behaviour: honest ones (`keep`, `finish-all`, `disk`) that show what the
//! planner and its imports can do, and hostile answers the host must refuse:
//! answers outside the contract, malformed values only unsafe code can build
//! (bad UTF-8, forged list pointers, an enum value that does not exist), an
//! allocator that answers the host with bad pointers, and a result too big
//! for the host to take in.
// Forging pointers and replacing `cabi_realloc` take `unsafe`; that is the attack.
#![allow(unsafe_code)]

pub mod modes;

use std::sync::atomic::{AtomicU8, Ordering};

use wharf_sdk::{
    Batch, Decisions, Deletion, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention,
    param,
};

pub struct HostileRetention;

pub struct Run {
    mode: String,
    /// Every id seen so far in this run: state kept across batches.
    seen: Vec<u64>,
    first: Option<u64>,
}

impl Retention for HostileRetention {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-retention", "0.0.1")
            .description("answers badly on purpose")
            .param(ParamSpec::new("mode", "how").default("keep"))
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let mode = param(&params, "mode").unwrap_or("keep").to_owned();
        // Only listed modes run, so each has an expected outcome in the tests.
        if !modes::MODES.contains(&mode.as_str()) {
            return Err(PluginError::invalid_params(format!("unknown mode {mode}")));
        }
        if mode == "bad-params" {
            return Err(PluginError::invalid_params(
                "mode bad-params is refused at open",
            ));
        }
        Ok(Run {
            mode,
            seen: Vec::new(),
            first: None,
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        self.seen.extend(batch.ids());
        let first = batch.ids().next();
        self.first = self.first.or(first);
        let mut decisions = Decisions::new();
        match self.mode.as_str() {
            "keep" | "finish-all" => {}
            "delete-all" => {
                for (id, file) in batch.files() {
                    let kind = batch.kind_of(&file);
                    let entity = batch.entity_of(&file).map_or("-", |e| e.name.as_str());
                    decisions.delete(id, &format!("{kind} of {entity}"));
                }
            }
            "released" => {
                // Keeps the files of released entities, deletes the rest.
                for (id, file) in batch.files() {
                    let released = batch.entity_of(&file).and_then(|e| e.attribute("released"))
                        == Some("true");
                    if !released {
                        decisions.delete(id, "not released");
                    }
                }
            }
            "disk" => {
                let space = wharf_sdk::disk::space();
                if let Some(id) = first {
                    decisions.delete(
                        id,
                        &format!("free {} of {}", space.free_bytes, space.total_bytes),
                    );
                }
            }
            "dup" => {
                if let Some(id) = first {
                    decisions.delete(id, "once");
                    decisions.delete(id, "twice");
                }
            }
            "stray" => {
                let max = batch.ids().max().unwrap_or(0);
                decisions.delete(max + 1000, "not in the batch");
            }
            "bad-reason" => {
                if let Some(id) = first {
                    decisions.deletions.push(Deletion {
                        file: id,
                        reason: 5,
                    });
                }
            }
            "reason-flood" => {
                decisions.reasons = (0..100).map(|i| format!("reason {i}")).collect();
            }
            "flood" => {
                // 100,000 copies of one id for a small batch.
                if let Some(id) = first {
                    decisions.reasons.push("again".into());
                    decisions.deletions = vec![
                        Deletion {
                            file: id,
                            reason: 0
                        };
                        100_000
                    ];
                }
            }
            "again" => {
                if let Some(id) = first {
                    decisions.delete(id, "first time");
                }
            }
            "panic" => panic!("hostile retention panics on purpose"),
            "bad-utf8" => {
                // SAFETY: none; the host must refuse the bytes.
                decisions
                    .reasons
                    .push(unsafe { String::from_utf8_unchecked(vec![b'a', 0xff, 0xfe]) });
            }
            "list-out-of-bounds" => {
                // A list the guest never allocated, past the end of memory.
                // SAFETY: none; it is handed to the host as is and never used here.
                decisions.deletions =
                    unsafe { Vec::from_raw_parts(0xffff_0000usize as *mut Deletion, 16, 16) };
            }
            "list-misaligned" => {
                // A real allocation, but a `deletion` needs 8-byte alignment.
                let words: &'static mut [u32] = Vec::leak(vec![0u32; 8]);
                let ptr = words.as_mut_ptr().wrapping_add(1).cast::<Deletion>();
                // SAFETY: none; it is handed to the host as is and never used here.
                decisions.deletions = unsafe { Vec::from_raw_parts(ptr, 1, 1) };
            }
            "bad-enum" => {
                // `level` has five cases; 9 is none of them.
                let message = "a level that does not exist";
                // SAFETY: the host's own `log` import, with an invalid level.
                unsafe { raw_log(9, message.as_ptr(), message.len()) };
            }
            "realloc-out-of-bounds" => {
                REALLOC.store(REALLOC_OUT_OF_BOUNDS, Ordering::SeqCst);
                let _ = batch.sizes();
            }
            "realloc-misaligned" => {
                REALLOC.store(REALLOC_MISALIGNED, Ordering::SeqCst);
                let _ = batch.sizes();
            }
            "hostcall-fuel" => {
                // 40 reasons that all point at the same 4 MiB: 160 MiB for
                // the host to copy out of a guest that holds 4.
                let big: &'static mut str = String::leak("x".repeat(4 << 20));
                let (ptr, len) = (big.as_mut_ptr(), big.len());
                decisions.reasons = (0..40)
                    // SAFETY: none; aliases handed to the host and never dropped here.
                    .map(|_| unsafe { String::from_raw_parts(ptr, len, len) })
                    .collect();
            }
            other => return Err(PluginError::invalid_params(format!("unknown mode {other}"))),
        }
        Ok(decisions)
    }

    fn finish(&mut self) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        match self.mode.as_str() {
            "finish-all" => {
                for id in &self.seen {
                    decisions.delete(*id, "whole run");
                }
            }
            "again" => {
                if let Some(id) = self.first {
                    decisions.delete(id, "second time");
                }
            }
            _ => {}
        }
        Ok(decisions)
    }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wharf:plugin/host@0.2.0")]
unsafe extern "C" {
    /// The `host.log` import the SDK also uses, called with raw values.
    #[link_name = "log"]
    fn raw_log(level: i32, message: *const u8, len: usize);
}

/// Natively (the crate's own build) there is no host to call.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_log(_level: i32, _message: *const u8, _len: usize) {}

const REALLOC_HONEST: u8 = 0;
const REALLOC_OUT_OF_BOUNDS: u8 = 1;
const REALLOC_MISALIGNED: u8 = 2;

/// How `cabi_realloc` answers the host's next allocation.
static REALLOC: AtomicU8 = AtomicU8::new(REALLOC_HONEST);

/// The allocator the host calls to hand the guest a list or a string (a
/// batch column, parameters). Honest until a mode tells it to answer with a
/// pointer past the end of memory, or one off its alignment. It replaces the
/// weak definitions in std and wit-bindgen.
///
/// # Safety
/// Called by the host with the canonical ABI's arguments.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use std::alloc::{Layout, alloc, handle_alloc_error, realloc};
    if REALLOC.load(Ordering::SeqCst) == REALLOC_OUT_OF_BOUNDS {
        return 0xffff_0000usize as *mut u8;
    }
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI passes a power-of-two alignment and, for a
    // reallocation, the layout the block was allocated with.
    let ptr = unsafe {
        let layout = Layout::from_size_align_unchecked(new_len, align);
        let ptr = if old_len == 0 {
            alloc(layout)
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        };
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        ptr
    };
    if REALLOC.load(Ordering::SeqCst) == REALLOC_MISALIGNED && align > 1 {
        return ptr.wrapping_add(1);
    }
    ptr
}

wharf_sdk::export_retention!(HostileRetention);
