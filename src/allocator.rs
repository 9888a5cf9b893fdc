//! The global allocator: mimalloc, called the way std calls `malloc`.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`,
//! whose alignment handling cost ~600 of the ~24,000 instructions of a proxied
//! request with a Lua stage (callgrind). Every block `mi_malloc` returns is
//! aligned to a machine word (its size classes are whole words: 8, 16, 24,
//! ... bytes on 64-bit), so for the layouts nearly every Rust value has
//! (alignment 1 to 8) we use the plain calls, and the aligned ones otherwise.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// What `mi_malloc` guarantees for a block of any size: one machine word
/// (`MI_INTPTR_SIZE`). Not 16: a 24-byte block is only 8-aligned.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as the Rust global allocator.
pub struct MiMalloc;

/// True when a plain call returns memory aligned enough for `align`.
fn plain(align: usize) -> bool {
    align <= PLAIN_ALIGN
}

// SAFETY: every pointer handed out comes from mimalloc and goes back to it
// (`mi_free` and `mi_realloc*` accept blocks from either family of calls);
// alignment is honoured by the rule in `plain` or by the aligned calls.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align()) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a Rust program asks for comes back aligned and
    /// usable, zeroed when asked, and keeps its bytes when grown or shrunk.
    #[test]
    fn blocks_are_aligned_for_every_layout() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 17, 24, 100, 4096, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                for new_size in [size / 2 + 1, size * 3] {
                    // SAFETY: non-zero sizes; every block is used within its
                    // size and freed once, with the layout it has then.
                    unsafe {
                        let z = a.alloc_zeroed(layout);
                        assert!((z as usize).is_multiple_of(align), "zeroed {size}/{align}");
                        assert!((0..size).all(|i| *z.add(i) == 0), "zeroed {size}/{align}");
                        a.dealloc(z, layout);
                        let p = a.alloc(layout);
                        assert!(!p.is_null() && (p as usize).is_multiple_of(align), "alloc {size}/{align}");
                        p.write_bytes(0xa5, size);
                        let q = a.realloc(p, layout, new_size);
                        assert!(
                            !q.is_null() && (q as usize).is_multiple_of(align),
                            "realloc {size}->{new_size}/{align}"
                        );
                        let kept = size.min(new_size);
                        assert!((0..kept).all(|i| *q.add(i) == 0xa5), "contents {size}->{new_size}/{align}");
                        a.dealloc(q, Layout::from_size_align(new_size, align).unwrap());
                    }
                }
            }
        }
    }
}
