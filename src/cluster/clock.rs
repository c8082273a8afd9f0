//! The clock the lease deadline is kept on: one that keeps counting while the process is
//! stopped (SIGSTOP) or the machine sleeps, because the lease in the store keeps expiring then.
//!
//! Linux: `CLOCK_BOOTTIME` (`CLOCK_MONOTONIC` stops while the system is suspended). macOS:
//! `CLOCK_MONOTONIC`, which there counts sleep (`mach_continuous_time`). Neither is ever set
//! back, unlike the wall clock.

/// Nanoseconds on the lease clock since an arbitrary origin (the same for the whole machine).
pub(crate) fn now_ns() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call to fill.
    if unsafe { libc::clock_gettime(CLOCK, &mut now) } != 0 {
        // Cannot happen with these clock ids; if it did, every lease would look expired
        // (fenced), never valid forever.
        return u64::MAX;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_forward() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ns();
        assert!(b >= a + 5_000_000, "{a} → {b}");
    }
}
