//! Which AMI generation Asterisk speaks, from the banner and from what arrives.
//!
//! Pure core. Banner versions: `1.0` = Asterisk 1.4; `1.1`–`1.x` = 1.6 to 11 (`1.1` is 1.6/1.8, `1.3`
//! is 11); `2.0` and later = 12+ (20 says `9.0.0`). Events then confirm or correct it: `Link`/`Unlink`
//! or a `Newstate` with `State` are 1.4; `Bridge` or `Dial` with `SubEvent` are 1.6–11; `DialBegin`,
//! `DialEnd`, `BridgeCreate`, `BridgeEnter` are 12+.

use std::fmt;

use super::frame::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Asterisk 1.4 (and 1.2): `Link`, `Dial` with `SrcUniqueID`, `Newstate` with `State`.
    V1_4,
    /// Asterisk 1.6 to 11: `Bridge`, `Dial` with `SubEvent`, `ChannelStateDesc`.
    V1_6To11,
    /// Asterisk 12 and later: `DialBegin`, `BridgeEnter`, snapshots with `Linkedid`.
    V12Plus,
    Unknown,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::V1_4 => "Asterisk 1.4",
            Dialect::V1_6To11 => "Asterisk 1.6-11",
            Dialect::V12Plus => "Asterisk 12+",
            Dialect::Unknown => "unknown Asterisk",
        })
    }
}

impl Dialect {
    /// From the banner's version (`1.0`, `1.3`, `9.0.0`, …).
    pub fn from_banner(version: &str) -> Dialect {
        let mut parts = version.trim().split('.');
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        match (major, minor) {
            (Some(1), Some(0)) => Dialect::V1_4,
            (Some(1), Some(_)) => Dialect::V1_6To11,
            (Some(m), _) if m >= 2 => Dialect::V12Plus,
            _ => Dialect::Unknown,
        }
    }

    /// The dialect a frame proves, if any.
    pub fn evidence(frame: &Frame) -> Option<Dialect> {
        match frame.event()? {
            "Link" | "Unlink" => Some(Dialect::V1_4),
            "Newstate"
                if frame.get("State").is_some() && frame.get("ChannelStateDesc").is_none() =>
            {
                Some(Dialect::V1_4)
            }
            "Bridge" => Some(Dialect::V1_6To11),
            "Dial" if frame.get("SubEvent").is_some() => Some(Dialect::V1_6To11),
            "Dial" if frame.get("SrcUniqueID").is_some() => Some(Dialect::V1_4),
            "DialBegin" | "DialEnd" | "BridgeCreate" | "BridgeEnter" | "BridgeLeave" => {
                Some(Dialect::V12Plus)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(h: &[(&str, &str)]) -> Frame {
        Frame::from_pairs(h)
    }

    #[test]
    fn banners() {
        assert_eq!(Dialect::from_banner("1.0"), Dialect::V1_4);
        assert_eq!(Dialect::from_banner("1.1"), Dialect::V1_6To11);
        assert_eq!(Dialect::from_banner("1.3"), Dialect::V1_6To11);
        assert_eq!(Dialect::from_banner("2.10.4"), Dialect::V12Plus);
        assert_eq!(Dialect::from_banner("9.0.0"), Dialect::V12Plus);
        assert_eq!(Dialect::from_banner("x"), Dialect::Unknown);
    }

    #[test]
    fn evidence_from_events() {
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Link")])),
            Some(Dialect::V1_4)
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Newstate"), ("State", "Up")])),
            Some(Dialect::V1_4)
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Newstate"), ("ChannelStateDesc", "Up")])),
            None
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Bridge")])),
            Some(Dialect::V1_6To11)
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Dial"), ("SubEvent", "Begin")])),
            Some(Dialect::V1_6To11)
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "Dial"), ("SrcUniqueID", "1")])),
            Some(Dialect::V1_4)
        );
        assert_eq!(
            Dialect::evidence(&f(&[("Event", "DialBegin")])),
            Some(Dialect::V12Plus)
        );
        assert_eq!(Dialect::evidence(&f(&[("Event", "VarSet")])), None);
        assert_eq!(Dialect::evidence(&f(&[("Response", "Success")])), None);
    }
}
