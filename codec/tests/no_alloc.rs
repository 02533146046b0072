//! The data path does not allocate once its buffers are warm: encoding a
//! batch into a reused `FrameBuf`, reading frames through a `FrameReader`,
//! and validating them in place.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::batch;
use settle_codec::{
    decode_body, decode_frame, FrameBuf, FrameReader, ReadStatus, SubmitBatch, SubmitRequest,
    SubmitResponse, TxResult,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only this test's thread is counted, not the harness's.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn warm_encode_read_and_validate_do_not_allocate() {
    let txs = batch(1000);
    let results = SubmitResponse {
        results: vec![TxResult::Created; 1000],
    };
    let mut out = FrameBuf::new();
    let mut reader = FrameReader::new();

    let round = |out: &mut FrameBuf, reader: &mut FrameReader| {
        out.clear();
        out.push(1, &SubmitBatch { transactions: &txs }).unwrap();
        out.push(2, &results).unwrap();
        let bytes = out.as_slice();
        let mut fed = 0;
        let mut frames = 0;
        while frames < 2 {
            match reader.next_frame().unwrap() {
                ReadStatus::Frame(frame) => {
                    if frame.request_id() == 1 {
                        let archived = decode_body::<SubmitRequest>(&frame).unwrap();
                        assert_eq!(archived.transactions.len(), 1000);
                    } else {
                        let archived = decode_body::<SubmitResponse>(&frame).unwrap();
                        assert_eq!(archived.results.len(), 1000);
                    }
                    frames += 1;
                }
                ReadStatus::NeedMore(_) => {
                    let spare = reader.spare();
                    let take = spare.len().min(bytes.len() - fed).min(20_000);
                    spare[..take].copy_from_slice(&bytes[fed..fed + take]);
                    reader.commit(take);
                    fed += take;
                }
            }
        }
        assert!(decode_frame(out.as_slice()).is_ok());
    };

    // Warm up: buffers and rkyv's arena grow to their working size.
    round(&mut out, &mut reader);
    round(&mut out, &mut reader);
    let n = allocations_during(|| {
        for _ in 0..3 {
            round(&mut out, &mut reader);
        }
    });
    assert_eq!(n, 0, "allocations on the warm data path");
}
