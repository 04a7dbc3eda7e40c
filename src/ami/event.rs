//! Frames → the typed events the call tracker needs, for all three AMI dialects (docs/ORIGINAL.md §5.3, §9.2).
//!
//! Pure core, run on the dispatcher thread. Header names are looked up case-insensitively (11 writes
//! `UniqueID` in `Dial`, `Uniqueid` elsewhere). Values Asterisk 12+ C-escapes (`\'`, `\"`, `\\`, `\?`
//! in caller names and `VarSet` values) are unescaped for that dialect. Anything the tracker does not
//! use is [`Event::Other`]; a frame missing a header the event needs is also `Other` (never a panic).

use super::dialect::Dialect;
use super::frame::Frame;

/// A caller ID: number and name, as Asterisk sent them (`<unknown>` included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cid {
    pub num: String,
    pub name: String,
}

/// A channel as an event describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chan {
    pub uid: String,
    pub channel: String,
    pub linkedid: Option<String>,
    /// The channel's own caller ID, if the event carries it.
    pub cid: Option<Cid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Newchannel(Chan),
    /// `state` from `State` (1.4) or `ChannelStateDesc` (1.6+); `connected` from ConnectedLine*.
    Newstate {
        chan: Chan,
        state: String,
        connected: Option<Cid>,
    },
    /// A dial starts: 1.4 `Dial`, 1.6–11 `Dial` `SubEvent: Begin`, 12+ `DialBegin`. `caller` is
    /// `None` for an Originate's own dial (12+ sends no `Channel` then); `cid` is the caller's ID.
    DialBegin {
        caller: Option<Chan>,
        dest: Chan,
        cid: Cid,
    },
    /// 12+ `DialEnd` (the 1.6–11 `SubEvent: End` names no destination and is not used).
    DialEnd {
        caller: Option<String>,
        dest: String,
        status: String,
    },
    /// A dialplan step; `Set` with `calldata=` is what the tracker looks for.
    Newexten {
        chan: Chan,
        context: String,
        application: String,
        appdata: String,
    },
    VarSet {
        chan: Chan,
        variable: String,
        value: String,
    },
    /// 1.4 `Link` and 1.6–11 `Bridge` with `Bridgestate: Link`: `uid2`/`channel2` is the called side.
    Link {
        uid1: String,
        uid2: String,
        channel1: String,
        channel2: String,
    },
    BridgeEnter {
        bridge: String,
        chan: Chan,
    },
    BridgeLeave {
        bridge: String,
        uid: String,
    },
    /// The two halves of a Local channel.
    LocalBridge {
        uid1: String,
        uid2: String,
    },
    /// 1.6–11 `AgentCalled`: the queue rings an agent (channel names only).
    AgentCalled {
        caller_channel: String,
        dest_channel: String,
    },
    NewCallerid(Chan),
    /// A `CoreShowChannel` or `Status` list item (asked for after every login): a channel already
    /// up; `Status` with `Variables: calldata` also names its calldata, and its dialplan context.
    ChannelListed {
        chan: Chan,
        connected: Option<Cid>,
        bridged: bool,
        calldata: Option<String>,
        context: Option<String>,
        /// The application the channel runs (`AppDial`/`AppQueue`: a leg something dialed).
        application: Option<String>,
        /// 1.6–11 `BridgedUniqueID`: the channel it is bridged with (one call, where there is no
        /// Linkedid to say so).
        peer: Option<String>,
    },
    /// 12+ `AttendedTransfer` (AMI `Atxfer`, a phone's REFER with Replaces, DTMF features) that
    /// succeeded: the transferers (`OrigTransferer`, `SecondTransferer`: they leave), the transferee
    /// (the party held: the customer), and every other channel it names (the target, the Local pair
    /// of `DestType: Link`).
    AttendedTransfer {
        transferers: Vec<String>,
        transferee: Option<String>,
        others: Vec<String>,
    },
    /// 12+ `NewConnectedLine`: the party `chan` is connected to has changed.
    ConnectedLine {
        chan: Chan,
        connected: Cid,
    },
    /// The end of a channel list (`CoreShowChannelsComplete`, `StatusComplete`); `last` for
    /// `StatusComplete`, the list the link always asks for last.
    ChannelListComplete {
        last: bool,
    },
    Rename {
        uid: String,
        newname: String,
    },
    Hangup(Chan),
    Other,
}

impl Event {
    /// The Uniqueids of the legs this event is about.
    pub fn uids(&self) -> [Option<&str>; 2] {
        match self {
            Event::Newchannel(c)
            | Event::Newstate { chan: c, .. }
            | Event::Newexten { chan: c, .. }
            | Event::VarSet { chan: c, .. }
            | Event::BridgeEnter { chan: c, .. }
            | Event::NewCallerid(c)
            | Event::ChannelListed { chan: c, .. }
            | Event::ConnectedLine { chan: c, .. }
            | Event::Hangup(c) => [Some(&c.uid), None],
            Event::DialBegin { caller, dest, .. } => {
                [Some(&dest.uid), caller.as_ref().map(|c| c.uid.as_str())]
            }
            Event::DialEnd { caller, dest, .. } => [Some(dest), caller.as_deref()],
            Event::Link { uid1, uid2, .. } | Event::LocalBridge { uid1, uid2 } => {
                [Some(uid1), Some(uid2)]
            }
            Event::BridgeLeave { uid, .. } | Event::Rename { uid, .. } => [Some(uid), None],
            Event::AgentCalled { .. }
            | Event::AttendedTransfer { .. }
            | Event::ChannelListComplete { .. }
            | Event::Other => [None, None],
        }
    }
}

/// Undoes Asterisk 12+'s escaping of `\`, `'`, `"`, `?` and control characters in some values.
pub fn unescape(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

struct View<'a> {
    f: &'a Frame,
    escaped: bool,
}

impl<'a> View<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.f.get(key)
    }
    fn s(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.trim().to_string())
    }
    /// A value that 12+ escapes.
    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| {
            if self.escaped {
                unescape(v)
            } else {
                v.to_string()
            }
        })
    }
    fn cid(&self, num: &str, name: &str) -> Option<Cid> {
        let num = self.text(num)?;
        Some(Cid {
            num,
            name: self.text(name).unwrap_or_default(),
        })
    }
    /// The channel snapshot with an optional key prefix (`Dest` for the dialed side).
    fn chan(&self, prefix: &str) -> Option<Chan> {
        let k = |s: &str| format!("{prefix}{s}");
        Some(Chan {
            uid: self.s(&k("Uniqueid"))?,
            channel: self.s(&k("Channel")).unwrap_or_default(),
            linkedid: self.s(&k("Linkedid")),
            cid: self.cid(&k("CallerIDNum"), &k("CallerIDName")),
        })
    }
}

/// The variable and value of a `Set` argument whose variable is `calldata` (or `_calldata`,
/// `__calldata`, inherited forms).
pub fn calldata_of(appdata: &str) -> Option<&str> {
    let (var, value) = appdata.split_once('=')?;
    (var.trim().trim_start_matches('_') == "calldata").then_some(value)
}

/// Decodes one frame. `dialect` decides how values are unescaped.
pub fn decode(frame: &Frame, dialect: Dialect) -> Event {
    let v = View {
        f: frame,
        escaped: dialect == Dialect::V12Plus,
    };
    decode_view(&v).unwrap_or(Event::Other)
}

fn decode_view(v: &View<'_>) -> Option<Event> {
    Some(match v.f.event()? {
        "Newchannel" => Event::Newchannel(v.chan("")?),
        "Newstate" => newstate(v)?,
        "Dial" => dial(v)?,
        "DialBegin" => Event::DialBegin {
            caller: v.get("Channel").and_then(|_| v.chan("")),
            dest: v.chan("Dest")?,
            cid: v.cid("CallerIDNum", "CallerIDName").unwrap_or_default(),
        },
        "DialEnd" => Event::DialEnd {
            caller: v.get("Channel").and_then(|_| v.s("Uniqueid")),
            dest: v.s("DestUniqueid")?,
            status: v.s("DialStatus").unwrap_or_default(),
        },
        "Newexten" => Event::Newexten {
            chan: v.chan("")?,
            context: v.s("Context").unwrap_or_default(),
            application: v.s("Application").unwrap_or_default(),
            appdata: v.get("AppData").unwrap_or("").to_string(),
        },
        "VarSet" => Event::VarSet {
            chan: v.chan("")?,
            variable: v.s("Variable")?,
            value: v.text("Value").unwrap_or_default(),
        },
        "Link" => link(v)?,
        "Bridge" if v.s("Bridgestate").as_deref() == Some("Link") => link(v)?,
        "BridgeEnter" => Event::BridgeEnter {
            bridge: v.s("BridgeUniqueid")?,
            chan: v.chan("")?,
        },
        "BridgeLeave" => Event::BridgeLeave {
            bridge: v.s("BridgeUniqueid")?,
            uid: v.s("Uniqueid")?,
        },
        "LocalBridge" => Event::LocalBridge {
            uid1: v.s("LocalOneUniqueid").or_else(|| v.s("Uniqueid1"))?,
            uid2: v.s("LocalTwoUniqueid").or_else(|| v.s("Uniqueid2"))?,
        },
        "AgentCalled" => Event::AgentCalled {
            caller_channel: v.s("ChannelCalling")?,
            dest_channel: v.s("DestinationChannel")?,
        },
        "NewCallerid" | "Newcallerid" => {
            let mut chan = v.chan("")?;
            if chan.cid.is_none() {
                chan.cid = v.cid("CallerID", "CallerIDName");
            }
            Event::NewCallerid(chan)
        }
        // The `Status` action's answer: one `Status` event per channel, with the variables asked for.
        "Status" => Event::ChannelListed {
            chan: v.chan("")?,
            connected: v.cid("ConnectedLineNum", "ConnectedLineName"),
            bridged: ["BridgedChannel", "Link", "BridgeID"]
                .iter()
                .any(|k| v.get(k).is_some_and(|b| !b.trim().is_empty())),
            calldata: v.f.get_all("Variable").find_map(|var| {
                let value = calldata_of(var)?;
                (value != "(null)").then(|| value.to_string())
            }),
            context: v.s("Context").filter(|c| !c.is_empty()),
            application: v.s("Application").filter(|a| !a.is_empty()),
            peer: v.s("BridgedUniqueID").filter(|p| !p.is_empty()),
        },
        "AttendedTransfer" => attended_transfer(v)?,
        "NewConnectedLine" => Event::ConnectedLine {
            chan: v.chan("")?,
            connected: v.cid("ConnectedLineNum", "ConnectedLineName")?,
        },
        "CoreShowChannelsComplete" => Event::ChannelListComplete { last: false },
        "StatusComplete" => Event::ChannelListComplete { last: true },
        "CoreShowChannel" => Event::ChannelListed {
            chan: v.chan("")?,
            connected: v.cid("ConnectedLineNum", "ConnectedLineName"),
            // 12+ `BridgeId`; 1.6–11 `BridgedChannel` / `BridgedUniqueID`.
            bridged: ["BridgeId", "BridgedChannel", "BridgedUniqueID"]
                .iter()
                .any(|k| v.get(k).is_some_and(|b| !b.trim().is_empty())),
            calldata: None,
            context: v.s("Context").filter(|c| !c.is_empty()),
            application: v.s("Application").filter(|a| !a.is_empty()),
            peer: v.s("BridgedUniqueID").filter(|p| !p.is_empty()),
        },
        "Rename" => Event::Rename {
            uid: v.s("Uniqueid")?,
            newname: v.s("Newname")?,
        },
        "Hangup" => Event::Hangup(v.chan("")?),
        _ => return None,
    })
}

/// Ends with `suffix`, ASCII case ignored (bytes compared: a key is not sliced as `str`).
fn ends_with_ignore_case(key: &str, suffix: &str) -> bool {
    let (k, s) = (key.as_bytes(), suffix.as_bytes());
    k.len() >= s.len() && k[k.len() - s.len()..].eq_ignore_ascii_case(s)
}

/// A successful `AttendedTransfer`'s channels by role; a failed one is `Other`.
fn attended_transfer(v: &View<'_>) -> Option<Event> {
    if !v.s("Result")?.eq_ignore_ascii_case("Success") {
        return None;
    }
    let (mut transferers, mut transferee, mut others) = (Vec::new(), None, Vec::new());
    for (key, value) in v.f.headers() {
        let uid = value.trim();
        if uid.is_empty()
            || !ends_with_ignore_case(key, "uniqueid")
            || ends_with_ignore_case(key, "bridgeuniqueid")
        {
            continue;
        }
        let k = key.to_ascii_lowercase();
        if k.ends_with("transfereruniqueid") {
            transferers.push(uid.to_string());
        } else if k == "transfereeuniqueid" {
            transferee = Some(uid.to_string());
        } else {
            others.push(uid.to_string());
        }
    }
    Some(Event::AttendedTransfer {
        transferers,
        transferee,
        others,
    })
}

fn newstate(v: &View<'_>) -> Option<Event> {
    let mut chan = v.chan("")?;
    // 1.4: `State` and `CallerID`; 1.6+: `ChannelStateDesc` and `CallerIDNum`.
    let state = v.s("ChannelStateDesc").or_else(|| v.s("State"))?;
    if chan.cid.is_none() {
        chan.cid = v.cid("CallerID", "CallerIDName");
    }
    Some(Event::Newstate {
        chan,
        state,
        connected: v.cid("ConnectedLineNum", "ConnectedLineName"),
    })
}

fn dial(v: &View<'_>) -> Option<Event> {
    match v.s("SubEvent").as_deref() {
        // 1.4: Source/Destination, SrcUniqueID/DestUniqueID, CallerID/CallerIDName.
        None => Some(Event::DialBegin {
            caller: Some(Chan {
                uid: v.s("SrcUniqueID")?,
                channel: v.s("Source").unwrap_or_default(),
                linkedid: None,
                cid: None,
            }),
            dest: Chan {
                uid: v.s("DestUniqueID")?,
                channel: v.s("Destination").unwrap_or_default(),
                linkedid: None,
                cid: None,
            },
            cid: v.cid("CallerID", "CallerIDName").unwrap_or_default(),
        }),
        Some("Begin") => Some(Event::DialBegin {
            caller: Some(Chan {
                uid: v.s("UniqueID")?,
                channel: v.s("Channel").unwrap_or_default(),
                linkedid: None,
                cid: v.cid("CallerIDNum", "CallerIDName"),
            }),
            dest: Chan {
                uid: v.s("DestUniqueID")?,
                channel: v.s("Destination").unwrap_or_default(),
                linkedid: None,
                cid: None,
            },
            cid: v.cid("CallerIDNum", "CallerIDName").unwrap_or_default(),
        }),
        Some(_) => None,
    }
}

fn link(v: &View<'_>) -> Option<Event> {
    Some(Event::Link {
        uid1: v.s("Uniqueid1")?,
        uid2: v.s("Uniqueid2")?,
        channel1: v.s("Channel1").unwrap_or_default(),
        channel2: v.s("Channel2").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
