//! Channel name → agent key: the `EXT` an agent registered with (docs/ORIGINAL.md §3.7, fixing docs/ORIGINAL.md bug 11).
//!
//! Pure core. The channel's unique suffix is removed: a trailing `<MASQ>`/`<ZOMBIE>`-style tag, the
//! Local half `;1`/`;2`, then the last `-` and what follows it when that is a hexadecimal call number.
//! `SIP/201-0080e6e0` → `SIP/201`, `PJSIP/201-0000000a` → `PJSIP/201`, `IAX2/201-3` → `IAX2/201`,
//! `Local/201@from-queue-0000000c;2` → `Local/201@from-queue`, `Agent/1001` → `Agent/1001`,
//! `SIP/office-201-0000abcd` → `SIP/office-201` (the original cut at the first `-`).

/// The agent key of `channel`.
pub fn agent_key(channel: &str) -> &str {
    let mut s = channel.trim();
    if s.ends_with('>') {
        if let Some(i) = s.rfind('<') {
            s = &s[..i];
        }
    }
    if let Some(stripped) = s.strip_suffix(";1").or_else(|| s.strip_suffix(";2")) {
        s = stripped;
    }
    let Some(slash) = s.find('/') else {
        return s;
    };
    match s.rfind('-') {
        Some(dash) if dash > slash => {
            let suffix = &s[dash + 1..];
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
                &s[..dash]
            } else {
                s
            }
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::{agent_key, Router};
    use crate::ami::dialect::Dialect;
    use crate::ami::frame::Frame;

    #[test]
    fn the_router_alone_corrects_the_banners_dialect_from_the_events() {
        let mut r = Router::default();
        r.session(Dialect::V1_6To11);
        assert_eq!(r.dialect(), Dialect::V1_6To11);
        r.frame(&Frame::from_pairs(&[
            ("Event", "DialBegin"),
            ("Channel", "x"),
        ]));
        assert_eq!(r.dialect(), Dialect::V12Plus);
    }

    #[test]
    fn suffixes_are_removed() {
        for (channel, key) in [
            ("SIP/201-0080e6e0", "SIP/201"),
            ("SIP/201-08961110", "SIP/201"),
            ("PJSIP/201-0000000a", "PJSIP/201"),
            ("IAX2/201-3", "IAX2/201"),
            ("Local/201@from-queue-0000000c;2", "Local/201@from-queue"),
            ("Local/100@astctidemo-00000000;1", "Local/100@astctidemo"),
            ("Agent/1001", "Agent/1001"),
            ("SIP/office-201-0000abcd", "SIP/office-201"),
            ("SIP/trunk-0000001c", "SIP/trunk"),
            ("SIP/201-0000000a<MASQ>", "SIP/201"),
            ("DAHDI/1-1", "DAHDI/1"),
            ("SIP/201", "SIP/201"),
            ("SIP/my-phone", "SIP/my-phone"),
            ("", ""),
            ("weird-", "weird-"),
        ] {
            assert_eq!(agent_key(channel), key, "{channel}");
        }
    }
}

/// Frames in, (agent key, wire bytes) out: dialect tracking, event decoding, the call tracker and the
/// agent key, as one pipeline. The dispatcher and `--replay` both run exactly this.
#[derive(Debug)]
pub struct Router {
    dialect: crate::ami::dialect::Dialect,
    tracker: crate::calls::Tracker,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            dialect: crate::ami::dialect::Dialect::Unknown,
            tracker: crate::calls::Tracker::new(),
        }
    }
}

impl Router {
    /// A new AMI session (banner or `Up`): the calls known so far are kept until the channel list
    /// the link asks for completes; then every leg it does not name gets its `Hangup` (reconnect =
    /// reconcile: a call that went on keeps its calldata, one that died with Asterisk is closed).
    pub fn session(&mut self, dialect: crate::ami::dialect::Dialect) {
        self.tracker.begin_resync();
        self.dialect = dialect;
    }

    /// The link went down: nothing is forgotten yet; the next session's channel list decides.
    pub fn down(&mut self) {}

    /// The dialect the events are decoded in: the banner's, corrected by the events themselves.
    pub fn dialect(&self) -> crate::ami::dialect::Dialect {
        self.dialect
    }

    pub fn tracker(&self) -> &crate::calls::Tracker {
        &self.tracker
    }

    /// Frames were lost: the channel list that follows resynchronises the calls.
    pub fn begin_resync(&mut self) {
        self.tracker.begin_resync();
    }

    /// `MANAGER_MAX_LEGS`.
    pub fn set_max_legs(&mut self, max: usize) {
        self.tracker.set_max_legs(max);
    }

    /// The clock (seconds) stamped on the legs the next frames touch.
    pub fn set_now(&mut self, now: u64) {
        self.tracker.set_now(now);
    }

    /// Hangs up legs silent for more than `max_age` seconds: (notifications, legs expired).
    pub fn expire(&mut self, max_age: u64) -> (Vec<(String, String)>, usize) {
        let (notes, n) = self.tracker.expire(max_age);
        (notes.into_iter().map(Self::wire).collect(), n)
    }

    fn wire(n: crate::calls::Notification) -> (String, String) {
        (
            agent_key(&n.channel).to_string(),
            crate::cti::notify::to_wire(n.kind, &n.record),
        )
    }

    /// The notifications one frame causes, as (agent key, wire text).
    pub fn frame(&mut self, frame: &crate::ami::frame::Frame) -> Vec<(String, String)> {
        if let Some(d) = crate::ami::dialect::Dialect::evidence(frame) {
            if d != self.dialect {
                log::info!("the events show {d}");
                self.dialect = d;
            }
        }
        let event = crate::ami::event::decode(frame, self.dialect);
        self.tracker
            .apply(event)
            .into_iter()
            .map(Self::wire)
            .collect()
    }
}
