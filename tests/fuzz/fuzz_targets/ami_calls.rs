//! Event decoding and the call tracker on arbitrary frame sequences, in every dialect.
#![no_main]
use astcti_server::ami::dialect::Dialect;
use astcti_server::ami::event::decode;
use astcti_server::ami::frame::{Decoder, Item};
use astcti_server::calls::Tracker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let dialect = [Dialect::V1_4, Dialect::V1_6To11, Dialect::V12Plus][k as usize % 3];
    let mut d = Decoder::default();
    d.push(rest);
    let mut t = Tracker::new();
    let mut n = 0u64;
    while let Some(item) = d.next_item() {
        if let Item::Frame(f) = item {
            n += 1;
            t.set_now(n);
            if n % 17 == u64::from(k) % 17 {
                t.begin_resync();
            }
            let _ = t.apply(decode(&f, dialect));
        }
    }
    t.set_now(n + 2);
    let _ = t.expire(0);
    assert_eq!(t.legs(), 0);
});
