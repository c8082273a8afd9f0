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
