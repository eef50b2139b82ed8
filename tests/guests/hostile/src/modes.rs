// Every `mode` the hostile test exporter knows. The plugin refuses any other,
// and the integration tests (`wharf_tests::hostile`) fail when one of these
// has no expected outcome: a new mode cannot go untested.
pub const MODES: &[&str] = &[
    "ok",
    "count",
    "println",
    "fail",
    // Resource exhaustion.
    "loop",
    "sleep",
    "host-loop",
    "alloc",
    "recurse",
    "shadow-stack",
    "output",
    "stdout-flood",
    "log-flood",
    "panic",
    // Misused imports.
    "read-other",
    "append-other",
    "fs",
    "env",
    "net",
    "bad-enum",
    // Results outside the contract.
    "escape",
    "absolute",
    "bidi",
    "media-crlf",
    "bad-utf8",
    "string-out-of-bounds",
];
