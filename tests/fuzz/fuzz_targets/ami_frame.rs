//! The AMI frame decoder: any bytes, split where the first byte says; the split and the whole
//! decode alike, and nothing panics.
#![no_main]
use astcti_server::ami::frame::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let step = 1 + k as usize;
    let mut whole = Decoder::default();
    whole.push(rest);
    let a: Vec<_> = std::iter::from_fn(|| whole.next_item()).collect();
    let mut split = Decoder::default();
    let mut b = Vec::new();
    for chunk in rest.chunks(step) {
        split.push(chunk);
        b.extend(std::iter::from_fn(|| split.next_item()));
    }
    assert_eq!(a, b);
});
