// Every `mode` the hostile-retention test plugin knows. The plugin refuses
// any other, and the integration tests (`wharf_tests::hostile_retention`)
// fail when one of these has no expected outcome: a new mode cannot go
// untested.
pub const MODES: &[&str] = &[
    // Honest runs.
    "keep",
    "finish-all",
    "delete-all",
    "released",
    "disk",
    // Answers outside the contract.
    "dup",
    "stray",
    "bad-reason",
    "reason-flood",
    "flood",
    "again",
    "bad-params",
    "panic",
    // Malformed values the host must lift, and a hostile allocator.
    "bad-utf8",
    "list-out-of-bounds",
    "list-misaligned",
    "bad-enum",
    "realloc-out-of-bounds",
    "realloc-misaligned",
    "hostcall-fuel",
];
