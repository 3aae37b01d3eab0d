//! No panic crosses into C: since Rust 1.81 one would abort the host process. Each exported
//! body runs inside [`guard`], and a panic becomes `COORD_PANIC`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::result::coord_result;

/// Runs an exported function's body; a panic in it (a bug in libcoord) is `COORD_PANIC`.
pub fn guard(body: impl FnOnce() -> Result<(), coord_result>) -> coord_result {
    // Unwind safety: a panic leaves at worst a handle whose calls fail; none is left with a
    // broken invariant that later calls would trust.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => coord_result::COORD_OK,
        Ok(Err(code)) => code,
        Err(_) => coord_result::COORD_PANIC,
    }
}

/// As [`guard`], for functions that return nothing (the `_free`s).
pub fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}
