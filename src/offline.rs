//! `--replay FILE [--agent EXT]…`: what each agent would have been sent, from a recorded AMI stream,
//! without database or sockets. Pure core around [`Router`], the same pipeline the dispatcher runs.
//!
//! Output: one line per notification, `AGENT<TAB>WIRE`, where WIRE is the exact notification with each
//! LF written as `\n` and each TAB as `\t`. Without agents, every agent key that receives something is
//! included. A banner in the middle of the file (a recording spanning reconnects) starts a new session,
//! as a reconnect does in the server.

use crate::ami::dialect::Dialect;
use crate::ami::frame::{Decoder, Item};
use crate::route::Router;

/// The `--replay` output for `bytes`.
pub fn replay(bytes: &[u8], agents: &[String]) -> String {
    let mut decoder = Decoder::default();
    decoder.push(bytes);
    let mut router = Router::default();
    let mut out = String::new();
    while let Some(item) = decoder.next_item() {
        match item {
            Item::Banner(version) => router.session(Dialect::from_banner(&version)),
            Item::Discarded(why) => log::warn!("--replay: frame discarded ({why})"),
            Item::Frame(frame) => {
                for (agent, wire) in router.frame(&frame) {
                    if agents.is_empty() || agents.contains(&agent) {
                        out.push_str(&agent);
                        out.push('\t');
                        out.push_str(&wire.replace('\n', "\\n").replace('\t', "\\t"));
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}
