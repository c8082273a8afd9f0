//! The panic boundary every export runs behind, the checks of pointer and string arguments,
//! and the strings handed to the host's callbacks.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::result::{fail, gw_result};

/// What an export returns when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for gw_result {
    fn on_panic() -> Self {
        gw_result::GW_ERR_PANIC
    }
}

impl<T> OnPanic for *mut T {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

impl OnPanic for u16 {
    fn on_panic() -> Self {
        0
    }
}

impl OnPanic for usize {
    fn on_panic() -> Self {
        0
    }
}

impl OnPanic for bool {
    fn on_panic() -> Self {
        false
    }
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

/// Runs an export's body; a panic is recorded as the thread's last error (`panic in
/// <function>: <message>`) and becomes `R::on_panic()` instead of unwinding into C.
pub(crate) fn boundary<R: OnPanic>(function: &'static str, body: impl FnOnce() -> R) -> R {
    // Unwind safety: on a panic the caller gets only an error, and the handles it passed stay
    // usable (setters replace whole values; ownership moves happen before fallible work).
    match catch_unwind(AssertUnwindSafe(|| {
        crate::failpoint::inject_panic(function);
        body()
    })) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            fail(
                gw_result::GW_ERR_PANIC,
                format!("panic in {function}: {message}"),
            );
            R::on_panic()
        }
    }
}

/// [`boundary`] for the exports that return a `gw_result`: `Err` carries a result already
/// recorded with [`fail`].
pub(crate) fn result_boundary(
    function: &'static str,
    body: impl FnOnce() -> Result<(), gw_result>,
) -> gw_result {
    boundary(function, || match body() {
        Ok(()) => gw_result::GW_OK,
        Err(result) => result,
    })
}

/// `GW_ERR_NULL_ARGUMENT`, recorded as `<function>: <argument> is NULL`.
pub(crate) fn null_argument(function: &str, argument: &str) -> gw_result {
    fail(
        gw_result::GW_ERR_NULL_ARGUMENT,
        format!("{function}: {argument} is NULL"),
    )
}

/// The pointer, or `GW_ERR_NULL_ARGUMENT` naming it.
pub(crate) fn non_null<T>(
    function: &str,
    argument: &str,
    ptr: *mut T,
) -> Result<*mut T, gw_result> {
    if ptr.is_null() {
        Err(null_argument(function, argument))
    } else {
        Ok(ptr)
    }
}

/// A NUL-terminated UTF-8 string argument: `GW_ERR_NULL_ARGUMENT` when NULL,
/// `GW_ERR_INVALID_ARGUMENT` when not UTF-8.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn utf8_argument<'a>(
    function: &str,
    argument: &str,
    ptr: *const c_char,
) -> Result<&'a str, gw_result> {
    if ptr.is_null() {
        return Err(null_argument(function, argument));
    }
    // SAFETY: non-NULL, and NUL-terminated and alive for 'a by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|err| {
        fail(
            gw_result::GW_ERR_INVALID_ARGUMENT,
            format!(
                "{function}: {argument} is not valid UTF-8 (invalid byte at offset {})",
                err.valid_up_to()
            ),
        )
    })
}

/// An optional string argument: NULL is `None` (the default), else as [`utf8_argument`].
///
/// # Safety
///
/// `ptr` is NULL or NUL-terminated and alive for `'a`.
pub(crate) unsafe fn optional_utf8_argument<'a>(
    function: &str,
    argument: &str,
    ptr: *const c_char,
) -> Result<Option<&'a str>, gw_result> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and NUL-terminated and alive for 'a by the caller's contract.
    unsafe { utf8_argument(function, argument, ptr) }.map(Some)
}

/// A name argument: non-NULL, UTF-8, not empty.
///
/// # Safety
///
/// `ptr` is NULL or a NUL-terminated string.
pub(crate) unsafe fn name_argument<'a>(
    function: &str,
    argument: &str,
    ptr: *const c_char,
) -> Result<&'a str, gw_result> {
    // SAFETY: forwarded contract.
    let name = unsafe { utf8_argument(function, argument, ptr) }?;
    if name.is_empty() {
        return Err(fail(
            gw_result::GW_ERR_INVALID_ARGUMENT,
            format!("{function}: {argument} is empty"),
        ));
    }
    Ok(name)
}

/// A JSON argument of `len` bytes (not NUL-terminated): `GW_ERR_NULL_ARGUMENT` when NULL,
/// `GW_ERR_INVALID_ARGUMENT` when not UTF-8 JSON.
///
/// # Safety
///
/// `ptr` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn json_argument(
    function: &str,
    argument: &str,
    ptr: *const c_char,
    len: usize,
) -> Result<serde_json::Value, gw_result> {
    if ptr.is_null() {
        return Err(null_argument(function, argument));
    }
    // SAFETY: non-NULL and `len` readable bytes by the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    serde_json::from_slice(bytes).map_err(|err| {
        fail(
            gw_result::GW_ERR_INVALID_ARGUMENT,
            format!("{function}: {argument} is not valid JSON: {err}"),
        )
    })
}

/// Text for a C callback: NUL-terminated, with any NUL inside replaced (JSON from serde_json
/// escapes control characters, so only free text can carry one).
pub(crate) fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|err| {
        let text = String::from_utf8_lossy(&err.into_vec()).replace('\0', "\u{FFFD}");
        CString::new(text).unwrap_or_default()
    })
}

/// Frees a handle the library boxed for the host (`gw_options`, `gw_serve_options`,
/// `gw_handlers`), behind the panic boundary; NULL is harmless.
///
/// # Safety
///
/// `handle` is NULL or came from `Box::into_raw` of a `Box<T>`, and is not used afterwards.
pub(crate) unsafe fn free_handle<T>(function: &'static str, handle: *mut T) {
    boundary(function, || {
        if !handle.is_null() {
            // SAFETY: boxed by the library and never used again, by the contract.
            drop(unsafe { Box::from_raw(handle) });
        }
    })
}

/// The calling thread's last error message, for the unit tests of the exports.
#[cfg(test)]
pub(crate) fn last_error() -> String {
    // SAFETY: a NUL-terminated string valid until the next failure on this thread.
    unsafe { CStr::from_ptr(super::gw_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_result_and_a_message() {
        let result = boundary("gw_test", || -> gw_result { panic!("boom {}", 1) });
        assert_eq!(result, gw_result::GW_ERR_PANIC);
        assert_eq!(last_error(), "panic in gw_test: boom 1");
        let null: *mut u8 = boundary("gw_test", || panic!("static"));
        assert!(null.is_null());
        assert_eq!(last_error(), "panic in gw_test: static");
        assert_eq!(boundary("gw_test", || 7u16), 7);
    }

    #[test]
    fn strings_are_checked() {
        // SAFETY: each pointer is NULL or a NUL-terminated literal.
        unsafe {
            assert_eq!(utf8_argument("f", "s", c"ok".as_ptr()), Ok("ok"));
            assert_eq!(
                utf8_argument("f", "s", std::ptr::null()),
                Err(gw_result::GW_ERR_NULL_ARGUMENT)
            );
            assert_eq!(last_error(), "f: s is NULL");
            assert_eq!(
                utf8_argument("f", "s", c"a\xffb".as_ptr()),
                Err(gw_result::GW_ERR_INVALID_ARGUMENT)
            );
            assert_eq!(
                last_error(),
                "f: s is not valid UTF-8 (invalid byte at offset 1)"
            );
        }
    }

    #[test]
    fn json_is_checked() {
        let text = b"{\"a\":[1]} trailing";
        // SAFETY: each pointer is NULL or has the given length readable.
        unsafe {
            let ok = json_argument("f", "j", text.as_ptr().cast(), 9);
            assert_eq!(ok, Ok(serde_json::json!({"a": [1]})));
            let bad = json_argument("f", "j", text.as_ptr().cast(), text.len());
            assert_eq!(bad, Err(gw_result::GW_ERR_INVALID_ARGUMENT));
            assert!(last_error().starts_with("f: j is not valid JSON: "));
            let empty = json_argument("f", "j", text.as_ptr().cast(), 0);
            assert_eq!(empty, Err(gw_result::GW_ERR_INVALID_ARGUMENT));
            let null = json_argument("f", "j", std::ptr::null(), 0);
            assert_eq!(null, Err(gw_result::GW_ERR_NULL_ARGUMENT));
            let latin1 = b"\"\xff\"";
            let latin1 = json_argument("f", "j", latin1.as_ptr().cast(), latin1.len());
            assert_eq!(latin1, Err(gw_result::GW_ERR_INVALID_ARGUMENT));
        }
    }
}
