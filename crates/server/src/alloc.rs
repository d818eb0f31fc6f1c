//! A global allocator that maps very large allocations lazily.
//!
//! The `kafka-protocol` codec sizes a `Vec` from the element count a request claims before it
//! reads the elements (`Vec::with_capacity(n)`). A 20-byte request claiming 2^31 array entries
//! would then ask for hundreds of GiB; the system allocator refuses and Rust aborts the process,
//! taking every connection down (the class of bug behind CVE-2022-34917). Allocations of
//! `LAZY_BYTES_MIN` or more are therefore mapped with `MAP_NORESERVE`: the kernel hands out
//! address space without committing memory, the decoder fails as soon as the frame runs out of
//! bytes (frames are bounded by `socket.request.max.bytes`), and the mapping is returned. Real
//! memory use stays bounded by what the decoder actually writes. No legitimate allocation in
//! ferry comes near this size, so the normal allocator serves everything else.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this big are mapped lazily.
pub const LAZY_BYTES_MIN: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct LazyHugeAlloc;

fn is_lazy(size: usize, align: usize) -> bool {
    size >= LAZY_BYTES_MIN && align <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

// SAFETY: every lazily mapped block is page aligned (enough for any `align <= PAGE_BYTES`),
// zero-filled, and unmapped with the size it was mapped with; everything else goes to `System`.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout.size(), layout.align()) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout.size(), layout.align()) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(layout.size(), layout.align()) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_lazy(layout.size(), layout.align()) && !is_lazy(new_size, layout.align()) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_claim_is_mapped_and_returned() {
        let layout = Layout::from_size_align(512 << 30, 8).unwrap();
        let ptr = unsafe { LazyHugeAlloc.alloc(layout) };
        assert!(
            !ptr.is_null(),
            "512 GiB of address space without reserving memory"
        );
        unsafe {
            ptr.write(7);
            assert_eq!(ptr.read(), 7);
            LazyHugeAlloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn growing_across_the_threshold_keeps_contents() {
        let small = Layout::from_size_align(16, 8).unwrap();
        unsafe {
            let ptr = LazyHugeAlloc.alloc(small);
            ptr.write_bytes(0xab, 16);
            let grown = LazyHugeAlloc.realloc(ptr, small, LAZY_BYTES_MIN);
            assert!(!grown.is_null());
            assert_eq!(*grown.add(15), 0xab);
            let big = Layout::from_size_align(LAZY_BYTES_MIN, 8).unwrap();
            let shrunk = LazyHugeAlloc.realloc(grown, big, 32);
            assert_eq!(*shrunk.add(15), 0xab);
            LazyHugeAlloc.dealloc(shrunk, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
