//! The trivial call of the Extism side: empty input, empty output.

use extism_pdk::{FnResult, plugin_fn};

#[plugin_fn]
pub fn noop(input: Vec<u8>) -> FnResult<Vec<u8>> {
    // Input and output are both empty; echoing keeps the work equal to a
    // call that reads its argument and returns a result.
    Ok(input)
}
