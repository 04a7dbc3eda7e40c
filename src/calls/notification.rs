//! The four notifications of the original protocol as the call tracker produces them: which one
//! ([`Kind`]) and its fields ([`Record`]). Pure data, owned by the tracker; `cti::notify` writes them
//! on the client wire.

/// The four notification ids the original client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Newcallerid,
    Newstate,
    Link,
    Hangup,
}

impl Kind {
    pub fn id(self) -> &'static str {
        match self {
            Kind::Newcallerid => "Newcallerid",
            Kind::Newstate => "Newstate",
            Kind::Link => "Link",
            Kind::Hangup => "Hangup",
        }
    }
}

/// The fields of `<call>`; `None` = element absent, `Some("")` = present and empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub uniqueid: Option<String>,
    pub channel: Option<String>,
    pub calleridnum: Option<String>,
    pub calleridname: Option<String>,
    pub context: Option<String>,
    pub appdata: Option<String>,
    pub state: Option<String>,
}
