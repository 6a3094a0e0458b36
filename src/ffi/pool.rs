//! APR pools in types: `Pool` owns one (destroyed on drop), `PoolRef<'a>`
//! borrows one that httpd owns (pconf, a request's pool) for `'a`.

use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use super::sys;

/// A pool owned by the MPM.
pub struct Pool(NonNull<sys::apr_pool_t>);

// SAFETY: a pool is used by one thread at a time; ownership moves with it
// (a transaction pool goes from the listener to a worker and back).
unsafe impl Send for Pool {}

/// A pool owned by httpd, alive for `'a`.
#[derive(Clone, Copy)]
pub struct PoolRef<'a>(NonNull<sys::apr_pool_t>, PhantomData<&'a ()>);

// SAFETY: a pool httpd keeps for the whole process (pconf) is only given
// subpools, which APR allows from any thread while it is not destroyed.
unsafe impl Send for PoolRef<'static> {}
// SAFETY: as above.
unsafe impl Sync for PoolRef<'static> {}

impl<'a> PoolRef<'a> {
    /// # Safety
    /// `p` is a live pool for all of `'a`.
    pub unsafe fn from_raw(p: *mut sys::apr_pool_t) -> Option<Self> {
        NonNull::new(p).map(|p| PoolRef(p, PhantomData))
    }

    pub fn as_ptr(self) -> *mut sys::apr_pool_t {
        self.0.as_ptr()
    }

    /// A subpool; httpd destroys it with this one unless dropped first.
    pub fn child(self, tag: &'static std::ffi::CStr) -> Pool {
        let mut p = ptr::null_mut();
        // SAFETY: self is live; apr_pool_create_ex aborts on OOM (the
        // default abort function), so `p` is set on return.
        unsafe {
            sys::apr_pool_create_ex(&mut p, self.as_ptr(), None, ptr::null_mut());
            sys::apr_pool_tag(p, tag.as_ptr());
        }
        Pool(NonNull::new(p).expect("apr_pool_create_ex"))
    }

    /// A subpool with an allocator of its own that keeps at most `max_free`
    /// bytes (MaxMemFree) after a clear: the transaction pool of a connection,
    /// so that connections never contend on one allocator mutex.
    pub fn child_with_allocator(self, max_free: usize) -> Result<Pool, sys::apr_status_t> {
        let mut alloc = ptr::null_mut();
        let mut p = ptr::null_mut();
        // SAFETY: plain APR calls with valid out-pointers; on failure the
        // allocator is destroyed before returning.
        unsafe {
            let rv = sys::apr_allocator_create(&mut alloc);
            if rv != 0 {
                return Err(rv);
            }
            sys::apr_allocator_max_free_set(alloc, max_free);
            let rv = sys::apr_pool_create_ex(&mut p, self.as_ptr(), None, alloc);
            if rv != 0 {
                sys::apr_allocator_destroy(alloc);
                return Err(rv);
            }
            sys::apr_allocator_owner_set(alloc, p);
            sys::apr_pool_tag(p, c"transaction".as_ptr());
        }
        Ok(Pool(NonNull::new(p).expect("apr_pool_create_ex")))
    }
}

impl Pool {
    pub fn as_ptr(&self) -> *mut sys::apr_pool_t {
        self.0.as_ptr()
    }

    pub fn as_ref(&self) -> PoolRef<'_> {
        PoolRef(self.0, PhantomData)
    }

    /// Runs the pool's cleanups and frees its memory for reuse.
    pub fn clear(&mut self) {
        // SAFETY: we own the pool and nothing borrows from it (&mut self).
        unsafe { sys::apr_pool_clear(self.as_ptr()) }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: we own the pool; destroying it runs its cleanups once.
        unsafe { sys::apr_pool_destroy(self.as_ptr()) }
    }
}
