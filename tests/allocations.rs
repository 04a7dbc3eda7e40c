//! Heap allocations of the AMI side, counted by a counting allocator (dhat's testing mode): the
//! decoder's cost per frame is pinned, not timed. One test function: the allocator's counters are
//! process-wide.

use std::path::Path;

use astcti_server::ami::frame::{Decoder, Frame, Item};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ami")
            .join(name),
    )
    .unwrap()
}

/// Decodes `bytes` in 64 KiB reads (as the AMI link reads); the frames, and the heap blocks
/// allocated while decoding.
fn decode(bytes: &[u8]) -> (Vec<Frame>, u64) {
    let mut d = Decoder::default();
    let mut frames = Vec::with_capacity(20_000);
    let before = dhat::HeapStats::get().total_blocks;
    for chunk in bytes.chunks(64 * 1024) {
        d.push(chunk);
        while let Some(item) = d.next_item() {
            if let Item::Frame(f) = item {
                frames.push(f);
            }
        }
    }
    let blocks = dhat::HeapStats::get().total_blocks - before;
    (frames, blocks)
}

#[test]
fn allocations_per_frame_are_pinned() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // 1. The decoder: a frame is two blocks (its text and its header offsets), a frame with body
    // lines three; beyond that only the decoder's own buffers, once (they are reused).
    for name in [
        "asterisk-20.20.1/f-burst-50.ami",
        "asterisk-22.10.1/a-inbound-100-answered.ami",
        "asterisk-11.25.3/a-inbound-100-answered.ami",
        "asterisk-1.4/real-call-from-queue-two-operators.ami",
    ] {
        let bytes = capture(name);
        let live = dhat::HeapStats::get().curr_blocks;
        let (frames, blocks) = decode(&bytes);
        let with_body = frames.iter().filter(|f| f.body().len() > 0).count() as u64;
        let n = frames.len() as u64;
        assert!(n > 0, "{name}: no frames");
        let own = 2 * n + with_body;
        assert!(
            blocks >= own && blocks <= own + 24,
            "{name}: {blocks} heap blocks for {n} frames ({with_body} with a body): more than two \
             per frame (three with a body) plus the decoder's own buffers"
        );
        drop(frames);
        assert!(
            dhat::HeapStats::get().curr_blocks <= live + 1,
            "{name}: the frames' blocks are not all given back"
        );
    }
}
