//! Test-only pauses inside acquisition, so a test can SIGKILL the process at each step.
//!
//! With the `failpoints` feature, `GATEWAY_FAILPOINT=<step>` makes the process print
//! `failpoint <step> reached` to stderr and sleep forever when it gets there. Without the
//! feature this compiles to nothing.

#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(step: &str) {
    if std::env::var("GATEWAY_FAILPOINT").is_ok_and(|wanted| wanted == step) {
        eprintln!("failpoint {step} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_step: &str) {}

/// Test-only: `GATEWAY_FORCE_NAMED_TEMP=1` makes Linux publish lock files the portable way
/// (a named temp file), so that path is tested here too.
#[cfg(feature = "failpoints")]
pub(crate) fn force_named_temp() -> bool {
    std::env::var_os("GATEWAY_FORCE_NAMED_TEMP").is_some_and(|v| v == "1")
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
#[allow(dead_code)] // Used on Linux only.
pub(crate) fn force_named_temp() -> bool {
    false
}

/// Test-only: `GATEWAY_FORCE_PROC_LINK=1` answers `linkat(AT_EMPTY_PATH)` with the ENOENT that
/// kernels before 6.10 give callers without CAP_DAC_READ_SEARCH, without making the call, so
/// the `/proc/self/fd` fallback runs here.
#[cfg(feature = "failpoints")]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // Used on Linux only.
pub(crate) fn force_proc_link() -> bool {
    std::env::var_os("GATEWAY_FORCE_PROC_LINK").is_some_and(|v| v == "1")
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
#[allow(dead_code)] // Used on Linux only.
pub(crate) fn force_proc_link() -> bool {
    false
}

/// Test-only: `GATEWAY_FFI_PANIC=<export>` makes that C export panic inside its panic
/// boundary, so a test can see the panic come back as `GW_ERR_PANIC`.
#[cfg(feature = "failpoints")]
pub(crate) fn inject_panic(function: &str) {
    if std::env::var("GATEWAY_FFI_PANIC").is_ok_and(|wanted| wanted == function) {
        panic!("injected by GATEWAY_FFI_PANIC");
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn inject_panic(_function: &str) {}
