//! The client line protocol and the session state machine on arbitrary bytes.
#![no_main]
use astcti_server::cti::proto::{LineBuffer, OrigRequest, MAX_LINE};
use astcti_server::cti::session::{AgentRow, Env, Session};
use libfuzzer_sys::fuzz_target;

struct E;
impl Env for E {
    fn user_logged_in(&mut self, u: &str) -> bool {
        u.len() % 5 == 0
    }
    fn authenticate(&mut self, u: &str, s: &str) -> Result<Option<AgentRow>, String> {
        Ok((s.len() % 2 == 0).then(|| AgentRow {
            username: u.into(),
            ext: Some("SIP/1".into()),
        }))
    }
    fn register(&mut self, _: &str, _: &str) -> bool {
        true
    }
    fn originate(&mut self, _: &str, r: OrigRequest) {
        assert!(!r.exten.chars().any(char::is_control) && r.exten.len() <= 80);
    }
    fn note(&mut self, m: &str) {
        assert!(!m.contains('\n'));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = LineBuffer::new(MAX_LINE);
    let mut s = Session::new();
    lines.push(data);
    while let Ok(Some(line)) = lines.next_line() {
        if s.handle(&line, &mut E).close {
            break;
        }
    }
});
