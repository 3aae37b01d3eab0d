//! Every use of a raw pointer the C caller handed in, and every call into C, is here, behind
//! checked helpers: the exported functions hold no `unsafe` code.
//!
//! The caller's side of the contract, as `coord.h` states it: a non-NULL pointer points to a
//! live value of the named type (for a (pointer, length) pair, to `length` readable bytes);
//! strings are NUL-terminated; a handle is used only between its `_new`/`_open` and its
//! `_free`; a callback and its context stay valid while it may be called.

use std::ffi::{c_char, c_void, CStr, CString};

use crate::result::coord_result;

/// A required string argument: NULL and non-UTF-8 are errors.
pub fn str_arg<'a>(ptr: *const c_char) -> Result<&'a str, coord_result> {
    if ptr.is_null() {
        return Err(coord_result::COORD_NULL_ARGUMENT);
    }
    // SAFETY: non-NULL, and by the caller's contract a NUL-terminated string that outlives
    // this call.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map_err(|_| coord_result::COORD_INVALID_UTF8)
}

/// An optional string argument: NULL is None.
pub fn opt_str_arg<'a>(ptr: *const c_char) -> Result<Option<&'a str>, coord_result> {
    if ptr.is_null() {
        return Ok(None);
    }
    str_arg(ptr).map(Some)
}

/// A (pointer, length) byte argument. NULL is fine only with length 0.
pub fn bytes_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], coord_result> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(coord_result::COORD_NULL_ARGUMENT)
        };
    }
    if len > isize::MAX as usize {
        return Err(coord_result::COORD_BAD_ARGUMENTS);
    }
    // SAFETY: non-NULL, and by the caller's contract `len` readable bytes that outlive this
    // call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A (pointer, count) array argument of `T`. NULL is fine only with count 0.
pub fn slice_arg<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T], coord_result> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(coord_result::COORD_NULL_ARGUMENT)
        };
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(coord_result::COORD_BAD_ARGUMENTS);
    }
    // SAFETY: non-NULL, and by the caller's contract `len` initialized values of `T`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A handle argument, borrowed for this call.
pub fn handle<'a, T>(ptr: *const T) -> Result<&'a T, coord_result> {
    // SAFETY: by the caller's contract a non-NULL handle is one this library made and has not
    // freed.
    unsafe { ptr.as_ref() }.ok_or(coord_result::COORD_NULL_ARGUMENT)
}

/// A handle argument, borrowed mutably for this call (its functions say that they must not be
/// called on one handle from two threads at once).
pub fn handle_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T, coord_result> {
    // SAFETY: by the caller's contract a non-NULL handle is one this library made and has not
    // freed, and no other call uses it meanwhile.
    unsafe { ptr.as_mut() }.ok_or(coord_result::COORD_NULL_ARGUMENT)
}

/// A handle given to the caller: freed only by [`take`].
pub fn give<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle for freeing; None for NULL.
pub fn take<T>(ptr: *mut T) -> Option<Box<T>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: by the caller's contract a non-NULL handle came from `give` and is freed once.
    Some(unsafe { Box::from_raw(ptr) })
}

/// Checks that an out-parameter can be written, before any work is done.
pub fn check_out<T>(ptr: *mut T) -> Result<(), coord_result> {
    if ptr.is_null() {
        Err(coord_result::COORD_NULL_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Writes an out-parameter; a NULL one (for an optional output) is skipped.
pub fn write<T>(ptr: *mut T, value: T) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: non-NULL, and by the caller's contract writable for a `T`. The old value is
    // not dropped: out-parameters hold no value of ours yet.
    unsafe { ptr.write(value) }
}

/// A string for the caller, to free with `coord_string_free`. Interior NULs (which ZooKeeper
/// paths cannot hold) end it.
pub fn give_string(text: &str) -> *mut c_char {
    let text = text.split('\0').next().unwrap_or("");
    match CString::new(text) {
        Ok(text) => text.into_raw(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Frees a string from [`give_string`].
pub fn free_string(ptr: *mut c_char) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: by the caller's contract it came from `give_string` and is freed once.
    drop(unsafe { CString::from_raw(ptr) });
}

/// Bytes for the caller, as (pointer, length), to free with `coord_buffer_free`.
pub fn give_bytes(bytes: Vec<u8>) -> (*mut u8, usize) {
    let len = bytes.len();
    (Box::into_raw(bytes.into_boxed_slice()).cast::<u8>(), len)
}

/// Frees bytes from [`give_bytes`].
pub fn free_bytes(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr, len);
    // SAFETY: by the caller's contract (ptr, len) came from `give_bytes` and is freed once.
    drop(unsafe { Box::from_raw(slice) });
}

/// An array for the caller, as (pointer, count); freed with [`free_array`].
pub fn give_array<T>(items: Vec<T>) -> (*mut T, usize) {
    let len = items.len();
    (Box::into_raw(items.into_boxed_slice()).cast::<T>(), len)
}

/// Takes back an array from [`give_array`].
pub fn free_array<T>(ptr: *mut T, len: usize) -> Vec<T> {
    if ptr.is_null() {
        return Vec::new();
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr, len);
    // SAFETY: by the caller's contract (ptr, len) came from `give_array` and is freed once.
    unsafe { Box::from_raw(slice) }.into_vec()
}

/// The caller's context pointer, carried to the thread that calls its callback.
#[derive(Clone, Copy)]
pub struct Context(pub *mut c_void);

// SAFETY: libcoord never dereferences it; it only hands it back to the caller's callback, on
// the thread the documentation names, which is the caller's contract to allow.
unsafe impl Send for Context {}

/// Calls a C callback.
pub fn call<A>(callback: unsafe extern "C" fn(*mut c_void, *const A), context: Context, arg: &A) {
    // SAFETY: by the caller's contract the callback may be called with its context; `arg`
    // is live for the call.
    unsafe { callback(context.0, arg) }
}
