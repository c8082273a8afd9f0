//! A host's `userdata` with its finalizer (wasmtime's pattern): shared by every closure that
//! calls the host with it, and given to the finalizer exactly once, when the last is dropped.

use std::ffi::c_void;

/// The host's finalizer for its `userdata`.
pub(crate) type FreeUserdata = unsafe extern "C" fn(userdata: *mut c_void);

/// A host's `userdata`, freed by its finalizer on drop; hold it in an `Arc` beside every
/// callback that uses it, so no callback can run after the finalizer.
pub(crate) struct HostUserdata {
    pointer: *mut c_void,
    free: Option<FreeUserdata>,
}

// SAFETY: the header requires the callbacks given this userdata to be callable from any
// thread, at once, and the finalizer from whichever thread drops the last reference; the
// library itself never reads through the pointer.
unsafe impl Send for HostUserdata {}
// SAFETY: as above.
unsafe impl Sync for HostUserdata {}

impl HostUserdata {
    /// Takes charge of `pointer`: `free` (when not NULL) is called with it on drop.
    pub(crate) fn new(pointer: *mut c_void, free: Option<FreeUserdata>) -> Self {
        Self { pointer, free }
    }

    /// The pointer, to pass to a host callback.
    pub(crate) fn get(&self) -> *mut c_void {
        self.pointer
    }
}

impl Drop for HostUserdata {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the host's finalizer with its own pointer; the last reference is gone, so
            // this runs once and no callback that used it can follow.
            unsafe { free(self.pointer) }
        }
    }
}
