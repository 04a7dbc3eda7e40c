//! The call tracker: one model of calls and legs for every AMI dialect, and the four notifications of
//! the original (docs/ORIGINAL.md §4.2) computed from it.
//!
//! Pure core, owned by the dispatcher thread: [`Tracker::apply`] takes a typed event and returns the
//! notifications it causes, each with the channel it is about (the router turns that into an agent).
//!
//! Model. A *leg* is a channel (key: Uniqueid). A *call* groups legs: by `Linkedid` where Asterisk
//! sends it (12+), else by joining legs that dial, bridge, queue to or pair (Local `;1`/`;2`) with each
//! other (1.4, 1.6–11). The calldata belongs to the call: the value of `Set(calldata=…)` (a `Newexten`
//! running `Set` whose variable is exactly `calldata`, or a `VarSet` of `calldata`), together with the
//! dialplan context it was set in.
//!
//! Notifications, per leg:
//! - `Newcallerid` once per leg, when it starts ringing: at the dial that creates it (the caller's
//!   number and name), or at `Ringing` for legs no dial announced (queue members in 1.4/11,
//!   originates) and for a 12+ leg whose `Ringing` comes before its `DialBegin` (number from the
//!   connected line, else the leg's own).
//! - `Newstate` for every other state change (a dialed leg's `Ringing` is suppressed), from the event.
//! - `Link` once per leg that answered a call and is bridged with the other party, with the caller's
//!   number and name, the context the calldata was set in (else the other party's context) and the
//!   calldata — also for the new agent after a transfer or a pickup. After an attended transfer, a
//!   linked leg (not a transferer) connected to a new party gets one more Link naming it, with the
//!   customer's calldata, sent at whichever of `AttendedTransfer` and its `NewConnectedLine` comes
//!   second (`Tracker::attended_transfer`).
//! - `Hangup` with whatever the leg accumulated; the leg is then forgotten, the call with its last leg.
//!
//! After a (re)connect the link lists the channels already up (`CoreShowChannels`); those legs are
//! seeded with their connected line as the caller, so their `Hangup` still reaches the agent; a dialed
//! leg the list shows bridged that never had its Link gets it when the last list (`Status`, with the
//! calldata) completes (`Tracker::late_links`).
//!
//! Order. Asterisk orders one channel's events, not those of different channels; every notification
//! is derived from the state reached, so any such order gives each leg the same notifications
//! (checked on every capture by tests/calls_expected.rs).
//!
//! Resynchronisation ([`Tracker::begin_resync`]): after frames were lost the link asks for the
//! channel list again; every leg that is neither listed nor created before the list completes is
//! gone, and gets its `Hangup` when the list ends. Legs with no event for a given age are expired
//! ([`Tracker::expire`]) the same way, so a lost `Hangup` costs memory for a bounded time only.
//! Time is passed in ([`Tracker::set_now`], seconds on any monotonic clock).

use std::collections::{HashMap, HashSet};

use crate::ami::event::{Chan, Cid, Event};
pub use notification::{Kind, Record};

/// A notification about `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub kind: Kind,
    pub record: Record,
}

#[derive(Debug, Clone, Default)]
struct Leg {
    uid: String,
    channel: String,
    call: String,
    own_cid: Option<Cid>,
    /// The caller shown in this leg's popup (and its Link).
    shown_cid: Option<Cid>,
    /// The dialplan context this leg last ran in (`Newexten`).
    context: Option<String>,
    /// calldata this leg set itself, or received with its Link.
    appdata: Option<String>,
    /// A Newexten `Set(calldata=…)` whose `VarSet` echo is still to come.
    pending_varset: bool,
    dialed: bool,
    /// Its `Newcallerid` was sent (one per leg, whether `Ringing` or the dial comes first).
    popped: bool,
    /// The party Asterisk last said it is connected to (`NewConnectedLine`).
    connected: Option<Cid>,
    /// Left its call as a transferer of an attended transfer: never relinked.
    transferer: bool,
    /// The channel list showed it bridged, answered by a dial, and it had no Link: one is sent when
    /// the last list completes (the call was answered while the AMI link was down).
    late: bool,
    /// 12+: answered a dial (`DialEnd ANSWER` names it).
    answered: bool,
    linked: bool,
    bridges: HashSet<String>,
    /// When an event last named this leg ([`Tracker::set_now`]'s clock).
    seen: u64,
    /// Rebuilt from a channel list (already up when the link connected).
    seeded: bool,
}

#[derive(Debug, Clone, Default)]
struct Call {
    calldata: Option<String>,
    context: Option<String>,
    /// An attended transfer completed in this call: a linked agent leg whose connected line changes
    /// gets a new Link naming its new party.
    transferred: bool,
    /// The legs of the call (their Uniqueids): joins, hangups and list answers touch only these.
    members: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    legs: HashMap<String, Leg>,
    calls: HashMap<String, Call>,
    bridges: HashMap<String, Vec<String>>,
    /// Events that made no sense (unknown legs and the like), counted.
    pub oddities: u64,
    /// Kinds of oddity already logged (each is logged once, then only counted).
    logged: HashSet<&'static str>,
    /// During a resynchronisation: when it began and the legs known to be alive (listed or new).
    resync: Option<(u64, HashSet<String>)>,
    /// While channel lists are coming (from `begin_resync` to the last list's end): the legs hung
    /// up meanwhile. A list item naming one is stale (Asterisk took the list's snapshot before the
    /// hangup, or wrote the hangup first) and must not bring the leg back. Bounded by
    /// [`MAX_ENDED_WHILE_LISTING`].
    ended_while_listing: Option<HashSet<String>>,
    now: u64,
    /// Channel name → Uniqueid of the live leg with that name (`AgentCalled` names channels only).
    by_channel: HashMap<String, String>,
    /// `MANAGER_MAX_LEGS` (0: [`DEFAULT_MAX_LEGS`]).
    max_legs: usize,
    /// Legs hung up because more than `max_legs` were known (the oldest first), counted.
    pub evicted: u64,
}

/// `MANAGER_MAX_LEGS` by default: far above the channels of any PBX this serves (a leg cost about
/// 1.5 KB in issue 22's attack: 100,000 never-ending channels held 155 MB), far below what a flood
/// of never-ending channels would otherwise hold.
pub const DEFAULT_MAX_LEGS: usize = 20_000;

/// A channel list that has not completed after this many seconds is given up (an Asterisk that
/// refused the list action): its legs are kept as they are.
pub const RESYNC_GIVE_UP: u64 = 60;

/// Hangups remembered while channel lists are coming; a list that takes longer than this many
/// hangups is not waited for any more (its stale items are then taken as they come).
pub const MAX_ENDED_WHILE_LISTING: usize = 100_000;

fn present(cid: &Cid) -> bool {
    !cid.num.is_empty() && cid.num != "<unknown>"
}

pub use crate::ami::event::calldata_of;

impl Tracker {
    pub fn new() -> Self {
        Tracker::default()
    }

    /// Forgets everything (the AMI link went down).
    pub fn clear(&mut self) {
        self.legs.clear();
        self.calls.clear();
        self.bridges.clear();
        self.by_channel.clear();
        self.resync = None;
        self.ended_while_listing = None;
    }

    /// `MANAGER_MAX_LEGS`: the most legs known at once.
    pub fn set_max_legs(&mut self, max: usize) {
        self.max_legs = max;
    }

    fn max_legs(&self) -> usize {
        if self.max_legs == 0 {
            DEFAULT_MAX_LEGS
        } else {
            self.max_legs
        }
    }

    /// More than `max_legs` legs: the oldest (by their last event) are hung up, a hundredth of
    /// the bound at a time so that a flood costs one sort per hundredth, not one per event.
    fn bound_legs(&mut self, out: &mut Vec<Notification>) {
        let max = self.max_legs();
        if self.legs.len() <= max {
            return;
        }
        let target = max - max / 100;
        let n = self.legs.len() - target;
        let mut ages: Vec<(u64, String)> = self
            .legs
            .values()
            .map(|l| (l.seen, l.uid.clone()))
            .collect();
        ages.select_nth_unstable(n - 1);
        ages.truncate(n);
        for (_, uid) in &ages {
            self.hangup(uid, out);
        }
        self.evicted += n as u64;
    }

    /// The clock for the legs' ages, in seconds.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    /// A channel list is coming (a new AMI session, or frames were lost): legs it does not name,
    /// and that no `Newchannel` creates meanwhile, are hung up when it completes.
    pub fn begin_resync(&mut self) {
        self.resync = Some((self.now, HashSet::new()));
        self.ended_while_listing = Some(HashSet::new());
    }

    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// Hangs up every leg no event has named for more than `max_age` seconds; returns the
    /// notifications and how many legs were expired.
    pub fn expire(&mut self, max_age: u64) -> (Vec<Notification>, usize) {
        let now = self.now;
        let old: Vec<String> = self
            .legs
            .values()
            .filter(|l| now.saturating_sub(l.seen) > max_age)
            .map(|l| l.uid.clone())
            .collect();
        let mut out = Vec::new();
        for uid in &old {
            self.hangup(uid, &mut out);
        }
        (out, old.len())
    }

    /// The channel list is complete: every leg it did not confirm is gone.
    fn end_resync(&mut self, out: &mut Vec<Notification>) {
        let Some((_, alive)) = self.resync.take() else {
            return;
        };
        let gone: Vec<String> = self
            .legs
            .keys()
            .filter(|uid| !alive.contains(*uid))
            .cloned()
            .collect();
        if !gone.is_empty() {
            log::info!(
                "resynchronised with Asterisk's channel list: {} legs no longer exist",
                gone.len()
            );
        }
        for uid in gone {
            self.hangup(&uid, out);
        }
    }

    /// Counts an oddity; the first of each kind is logged.
    fn odd(&mut self, kind: &'static str, detail: &str) {
        self.oddities += 1;
        if self.logged.insert(kind) {
            // `detail` comes from Asterisk: escaped here, the one place these lines are made.
            let detail = crate::logging::escape(detail);
            log::info!("{kind} ({detail}); further ones are only counted");
        }
    }

    /// The indexes agree with the legs (every leg is a member of its call, every member is a leg of
    /// that call, every channel-name entry names a live leg of that name). For tests.
    pub fn consistent(&self) -> bool {
        self.legs.values().all(|l| {
            self.calls
                .get(&l.call)
                .is_some_and(|c| c.members.contains(&l.uid))
        }) && self.calls.iter().all(|(id, c)| {
            !c.members.is_empty()
                && c.members
                    .iter()
                    .all(|u| self.legs.get(u).is_some_and(|l| &l.call == id))
        }) && self
            .by_channel
            .iter()
            .all(|(name, u)| self.legs.get(u).is_some_and(|l| &l.channel == name))
    }

    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn apply(&mut self, event: Event) -> Vec<Notification> {
        let mut out = self.apply_event(event);
        self.bound_legs(&mut out);
        out
    }

    fn apply_event(&mut self, event: Event) -> Vec<Notification> {
        let mut out = Vec::new();
        for uid in event.uids().into_iter().flatten() {
            if let Some(leg) = self.legs.get_mut(uid) {
                leg.seen = self.now;
            }
        }
        if self
            .resync
            .as_ref()
            .is_some_and(|(t, _)| self.now.saturating_sub(*t) > RESYNC_GIVE_UP)
        {
            self.resync = None;
            self.ended_while_listing = None;
            self.odd(
                "a channel list never completed; the calls were kept as they were",
                "",
            );
        }
        if let (Some(ended), Event::ChannelListed { chan, .. }) =
            (self.ended_while_listing.as_ref(), &event)
        {
            if ended.contains(&chan.uid) {
                // Uniqueids are never reused: this leg is gone, whatever the list says.
                self.odd(
                    "a channel list named a channel already hung up; the item was ignored",
                    &chan.uid,
                );
                return out;
            }
        }
        if let (Some((_, alive)), Event::Newchannel(c) | Event::ChannelListed { chan: c, .. }) =
            (self.resync.as_mut(), &event)
        {
            alive.insert(c.uid.clone());
        }
        match event {
            Event::Newchannel(chan) => {
                self.upsert(&chan);
            }
            Event::ChannelListComplete { last } => {
                self.end_resync(&mut out);
                if last {
                    self.ended_while_listing = None;
                    self.late_links(&mut out);
                }
            }
            Event::Newstate {
                chan,
                state,
                connected,
            } => self.newstate(chan, state, connected, &mut out),
            Event::DialBegin { caller, dest, cid } => self.dial_begin(caller, dest, cid, &mut out),
            Event::DialEnd {
                caller,
                dest,
                status,
            } => {
                if status == "ANSWER" && caller.is_some() {
                    if let Some(leg) = self.legs.get_mut(&dest) {
                        leg.answered = true;
                        self.link_bridged(&dest, &mut out);
                    }
                }
            }
            Event::Newexten {
                chan,
                context,
                application,
                appdata,
            } => self.newexten(chan, context, &application, &appdata),
            Event::VarSet {
                chan,
                variable,
                value,
            } => self.varset(chan, &variable, value),
            Event::Link { uid1, uid2, .. } => self.link_event(&uid1, &uid2, &mut out),
            Event::BridgeEnter { bridge, chan } => {
                self.upsert(&chan);
                let members = self.bridges.entry(bridge.clone()).or_default();
                if !members.contains(&chan.uid) {
                    members.push(chan.uid.clone());
                }
                if let Some(leg) = self.legs.get_mut(&chan.uid) {
                    leg.bridges.insert(bridge.clone());
                }
                let members = self.bridges.get(&bridge).cloned().unwrap_or_default();
                for uid in members {
                    self.link_bridged(&uid, &mut out);
                }
            }
            Event::BridgeLeave { bridge, uid } => self.leave(&bridge, &uid),
            Event::LocalBridge { uid1, uid2 } => self.join(&uid1, &uid2),
            Event::AgentCalled {
                caller_channel,
                dest_channel,
            } => {
                let find = |name: &str| self.by_channel.get(name).cloned();
                if let (Some(a), Some(b)) = (find(&caller_channel), find(&dest_channel)) {
                    self.join(&a, &b);
                }
            }
            Event::NewCallerid(chan) => {
                self.update(&chan);
            }
            Event::ChannelListed {
                chan,
                connected,
                bridged,
                calldata,
                context,
                application,
                peer,
            } => {
                let uid = chan.uid.clone();
                let dialed = application.is_some_and(|a| {
                    a.eq_ignore_ascii_case("AppDial") || a.eq_ignore_ascii_case("AppQueue")
                });
                let no_linkedid = chan.linkedid.is_none();
                self.listed(chan, connected, (bridged, dialed), calldata, context);
                // 1.6–11: the channel it is bridged with is of the same call.
                if let Some(peer) = peer.filter(|_| no_linkedid) {
                    self.join(&peer, &uid);
                }
            }
            Event::AttendedTransfer {
                transferers,
                transferee,
                others,
            } => self.attended_transfer(&transferers, transferee.as_deref(), &others, &mut out),
            Event::ConnectedLine { chan, connected } => {
                self.connected_line(&chan, connected, &mut out)
            }
            Event::Rename { uid, newname } => self.rename(&uid, newname),
            Event::Hangup(chan) => {
                if let Some(ended) = self.ended_while_listing.as_mut() {
                    if ended.len() < MAX_ENDED_WHILE_LISTING {
                        ended.insert(chan.uid.clone());
                    } else {
                        self.ended_while_listing = None;
                    }
                }
                self.hangup(&chan.uid, &mut out)
            }
            Event::Other => {}
        }
        out
    }

    /// Refreshes what a known leg's event says about it (name, Linkedid, own caller ID).
    fn update(&mut self, chan: &Chan) {
        if !chan.channel.is_empty() {
            self.rename(&chan.uid, chan.channel.clone());
        }
        let Some(leg) = self.legs.get_mut(&chan.uid) else {
            return;
        };
        if chan.cid.is_some() {
            leg.own_cid = chan.cid.clone();
        }
        if let Some(l) = &chan.linkedid {
            if *l != leg.call {
                let old = std::mem::replace(&mut leg.call, l.clone());
                self.calls
                    .entry(l.clone())
                    .or_default()
                    .members
                    .insert(chan.uid.clone());
                self.leave_call(&old, &chan.uid);
            }
        }
    }

    /// The leg `uid` is now called `name` (the channel-name index follows).
    fn rename(&mut self, uid: &str, name: String) {
        let Some(leg) = self.legs.get_mut(uid) else {
            return;
        };
        if leg.channel == name {
            return;
        }
        if self.by_channel.get(&leg.channel).is_some_and(|u| u == uid) {
            self.by_channel.remove(&leg.channel);
        }
        self.by_channel.insert(name.clone(), uid.to_string());
        leg.channel = name;
    }

    /// `uid` is no longer a leg of `call`; the call goes with its last leg.
    fn leave_call(&mut self, call: &str, uid: &str) {
        if let Some(c) = self.calls.get_mut(call) {
            c.members.remove(uid);
            if c.members.is_empty() {
                self.calls.remove(call);
            }
        }
    }

    /// The leg of `chan`, created if new.
    fn upsert(&mut self, chan: &Chan) {
        if chan.uid.is_empty() {
            self.odd(
                "an event named a channel with an empty Uniqueid",
                &chan.channel,
            );
            return;
        }
        if !self.legs.contains_key(&chan.uid) {
            let call = chan.linkedid.clone().unwrap_or_else(|| chan.uid.clone());
            self.calls
                .entry(call.clone())
                .or_default()
                .members
                .insert(chan.uid.clone());
            self.by_channel
                .insert(chan.channel.clone(), chan.uid.clone());
            self.legs.insert(
                chan.uid.clone(),
                Leg {
                    uid: chan.uid.clone(),
                    channel: chan.channel.clone(),
                    call,
                    seen: self.now,
                    ..Leg::default()
                },
            );
        }
        self.update(chan);
    }

    fn record(leg: &Leg) -> Record {
        Record {
            uniqueid: Some(leg.uid.clone()),
            channel: Some(leg.channel.clone()),
            calleridnum: leg.shown_cid.as_ref().map(|c| c.num.clone()),
            calleridname: leg.shown_cid.as_ref().map(|c| c.name.clone()),
            context: leg.context.clone(),
            appdata: leg.appdata.clone(),
            state: None,
        }
    }

    fn notify(out: &mut Vec<Notification>, leg: &Leg, kind: Kind) {
        out.push(Notification {
            channel: leg.channel.clone(),
            kind,
            record: Self::record(leg),
        });
    }

    fn newstate(
        &mut self,
        chan: Chan,
        state: String,
        connected: Option<Cid>,
        out: &mut Vec<Notification>,
    ) {
        self.update(&chan);
        if state == "Ringing" {
            let Some(leg) = self.legs.get_mut(&chan.uid) else {
                // The original crashed here (docs/ORIGINAL.md bug 4): a channel we never saw start.
                self.oddities += 1;
                log::debug!(
                    "Ringing of unknown channel {} ({}) ignored",
                    chan.channel,
                    chan.uid
                );
                return;
            };
            // One popup per leg: a dialed leg's came with its dial; a Ringing that arrives before
            // the dial (another Asterisk thread) pops with the connected line, which Asterisk set
            // from the dialer's caller ID before calling, and the dial then sends nothing.
            if !leg.popped {
                let cid = connected
                    .filter(present)
                    .or_else(|| chan.cid.clone())
                    .unwrap_or_default();
                leg.shown_cid = Some(cid);
                leg.popped = true;
                Self::notify(out, leg, Kind::Newcallerid);
            }
            return;
        }
        out.push(Notification {
            channel: chan.channel.clone(),
            kind: Kind::Newstate,
            record: Record {
                uniqueid: Some(chan.uid.clone()),
                channel: Some(chan.channel.clone()),
                calleridnum: chan.cid.as_ref().map(|c| c.num.clone()),
                calleridname: chan.cid.as_ref().map(|c| c.name.clone()),
                state: Some(state),
                ..Record::default()
            },
        });
    }

    fn dial_begin(
        &mut self,
        caller: Option<Chan>,
        dest: Chan,
        cid: Cid,
        out: &mut Vec<Notification>,
    ) {
        let Some(caller) = caller else {
            // An Originate's own dial: the ringing leg will show its connected line.
            self.upsert(&dest);
            return;
        };
        self.upsert(&caller);
        self.upsert(&dest);
        if dest.linkedid.is_none() {
            self.join(&caller.uid, &dest.uid);
        }
        if let Some(leg) = self.legs.get_mut(&dest.uid) {
            leg.dialed = true;
            leg.shown_cid = Some(cid);
            if !std::mem::replace(&mut leg.popped, true) {
                Self::notify(out, leg, Kind::Newcallerid);
            }
        }
    }

    fn newexten(&mut self, chan: Chan, context: String, application: &str, appdata: &str) {
        // 12+ reports an outgoing (dialed) channel as running the pseudo-application AppDial in the
        // dialer's context: that is not dialplan the leg ran.
        if matches!(application, "AppDial" | "AppDial2" | "AppQueue") {
            self.update(&chan);
            return;
        }
        self.upsert(&chan);
        let Some(leg) = self.legs.get_mut(&chan.uid) else {
            return;
        };
        if !context.is_empty() {
            leg.context = Some(context.clone());
        }
        if !application.eq_ignore_ascii_case("Set") {
            return;
        }
        if let Some(value) = calldata_of(appdata) {
            leg.pending_varset = true;
            let value = value.to_string();
            self.set_calldata(&chan.uid, value, Some(context));
        }
    }

    fn varset(&mut self, chan: Chan, variable: &str, value: String) {
        if variable.trim_start_matches('_') != "calldata" {
            return;
        }
        self.upsert(&chan);
        let Some(leg) = self.legs.get_mut(&chan.uid) else {
            return;
        };
        if std::mem::take(&mut leg.pending_varset) {
            // The echo of the Set just seen (whose AppData is unescaped): nothing new.
            return;
        }
        let context = leg.context.clone();
        self.set_calldata(&chan.uid, value, context);
    }

    /// A list item: a leg that is up. Unknown legs are rebuilt (seeded) so that their Hangup still
    /// reaches the agent; known legs keep what they have. A dialed leg listed as bridged that never
    /// had its Link (`answered`: answered by a dial and bridged) is marked for a late Link, sent when
    /// the last list completes. Calldata a `Status` item names goes to the call, and to the call's
    /// rebuilt legs, whose later notifications then carry it.
    fn listed(
        &mut self,
        chan: Chan,
        connected: Option<Cid>,
        (bridged, dialed): (bool, bool),
        calldata: Option<String>,
        context: Option<String>,
    ) {
        if !self.legs.contains_key(&chan.uid) {
            self.upsert(&chan);
            if let Some(leg) = self.legs.get_mut(&chan.uid) {
                leg.shown_cid = connected.clone().filter(present);
                leg.dialed = true;
                leg.popped = true;
                leg.seeded = true;
                // No further Link from a re-bridge; the late one below if it was dialed.
                leg.linked = bridged;
                leg.late = bridged && dialed;
            }
        } else if let Some(leg) = self.legs.get_mut(&chan.uid) {
            if bridged && dialed && !leg.linked {
                leg.late = true;
                if leg.shown_cid.is_none() {
                    leg.shown_cid = connected.filter(present);
                }
            }
        }
        let Some(value) = calldata else {
            return;
        };
        self.set_calldata(&chan.uid, value.clone(), context.clone());
        let Some(call) = self.legs.get(&chan.uid).map(|l| l.call.clone()) else {
            return;
        };
        let members: Vec<String> = self
            .calls
            .get(&call)
            .map(|c| c.members.iter().cloned().collect())
            .unwrap_or_default();
        for uid in members {
            if let Some(leg) = self.legs.get_mut(&uid) {
                if leg.seeded && leg.linked && leg.appdata.is_none() {
                    leg.appdata = Some(value.clone());
                    leg.context = context.clone().or(leg.context.take());
                }
            }
        }
    }

    /// `chan` is now connected to `connected`: remembered, and after an attended transfer a Link if
    /// that is a new party.
    fn connected_line(&mut self, chan: &Chan, connected: Cid, out: &mut Vec<Notification>) {
        let Some(leg) = self.legs.get_mut(&chan.uid) else {
            return;
        };
        leg.connected = Some(connected);
        self.relink_after_transfer(&chan.uid, out);
    }

    /// A successful attended transfer. The transferers leave; the customer's (the transferee's)
    /// calldata follows the customer into every call the transfer names (with REFER/Replaces the
    /// target's leg belongs to the consultation call, which had none); every linked leg of those
    /// calls now connected to a party it was not shown gets its Link. Whether the target's
    /// `NewConnectedLine` came before this event or comes after, the Link is the same.
    fn attended_transfer(
        &mut self,
        transferers: &[String],
        transferee: Option<&str>,
        others: &[String],
        out: &mut Vec<Notification>,
    ) {
        let call_of = |uid: &str| self.legs.get(uid).map(|l| l.call.clone());
        let calls: Vec<String> = transferee
            .into_iter()
            .chain(transferers.iter().map(String::as_str))
            .chain(others.iter().map(String::as_str))
            .filter_map(call_of)
            .collect();
        // The customer's calldata: the transferee's call's, else the first named call that has one.
        let data = calls
            .iter()
            .filter_map(|c| self.calls.get(c))
            .find(|c| c.calldata.is_some())
            .map(|c| (c.calldata.clone(), c.context.clone()));
        for uid in transferers {
            if let Some(leg) = self.legs.get_mut(uid) {
                leg.transferer = true;
            }
        }
        let mut members = Vec::new();
        for id in &calls {
            if let Some(call) = self.calls.get_mut(id) {
                call.transferred = true;
                if let Some((calldata, context)) = &data {
                    call.calldata.clone_from(calldata);
                    call.context.clone_from(context);
                }
                members.extend(call.members.iter().cloned());
            }
        }
        members.sort();
        members.dedup();
        for uid in members {
            self.relink_after_transfer(&uid, out);
        }
    }

    /// After an attended transfer in its call, a linked leg (not a transferer) whose connected line
    /// names a party it was not shown gets one Link naming that party, with the call's calldata
    /// (the customer's, see [`Tracker::attended_transfer`]).
    fn relink_after_transfer(&mut self, uid: &str, out: &mut Vec<Notification>) {
        let Some(leg) = self.legs.get(uid) else {
            return;
        };
        let Some(call) = self.calls.get(&leg.call).filter(|c| c.transferred) else {
            return;
        };
        let Some(party) = leg.connected.clone().filter(present) else {
            return;
        };
        let same = leg.shown_cid.as_ref().is_some_and(|c| c.num == party.num);
        if !leg.linked || leg.transferer || same {
            return;
        }
        let (calldata, context) = (call.calldata.clone(), call.context.clone());
        let Some(leg) = self.legs.get_mut(uid) else {
            return;
        };
        leg.shown_cid = Some(party);
        if calldata.is_some() {
            leg.appdata = calldata;
            leg.context = context.or(leg.context.take());
        }
        Self::notify(out, leg, Kind::Link);
    }

    /// The last channel list completed: the Link of every leg it showed answered and bridged that
    /// never had one (a call answered while the AMI link was down), with the party the list named
    /// and the call's context and calldata.
    fn late_links(&mut self, out: &mut Vec<Notification>) {
        let mut late: Vec<String> = self
            .legs
            .values()
            .filter(|l| l.late)
            .map(|l| l.uid.clone())
            .collect();
        late.sort();
        for uid in late {
            let Some(leg) = self.legs.get(&uid) else {
                continue;
            };
            let call = self.calls.get(&leg.call).cloned().unwrap_or_default();
            let Some(leg) = self.legs.get_mut(&uid) else {
                continue;
            };
            if !std::mem::take(&mut leg.late) {
                continue;
            }
            leg.linked = true;
            if leg.appdata.is_none() && call.calldata.is_some() {
                leg.appdata = call.calldata;
                leg.context = call.context.or(leg.context.take());
            }
            Self::notify(out, leg, Kind::Link);
        }
    }

    fn set_calldata(&mut self, uid: &str, value: String, context: Option<String>) {
        let Some(leg) = self.legs.get_mut(uid) else {
            return;
        };
        leg.appdata = Some(value.clone());
        let call = self.calls.entry(leg.call.clone()).or_default();
        call.calldata = Some(value);
        call.context = context.filter(|c| !c.is_empty()).or(call.context.take());
    }

    /// Puts two legs in one call (1.4/1.6–11, where there is no Linkedid). The smaller call moves
    /// into the larger, so a leg moves O(log n) times at most; the calldata (and its context) of
    /// `a`'s call wins when both have one.
    fn join(&mut self, a: &str, b: &str) {
        let (Some(ca), Some(cb)) = (
            self.legs.get(a).map(|l| l.call.clone()),
            self.legs.get(b).map(|l| l.call.clone()),
        ) else {
            return;
        };
        if ca == cb {
            return;
        }
        let size = |c: &str| self.calls.get(c).map_or(0, |c| c.members.len());
        let (keep, gone) = if size(&cb) <= size(&ca) {
            (ca.clone(), cb)
        } else {
            (cb, ca.clone())
        };
        let moved = self.calls.remove(&gone).unwrap_or_default();
        for uid in &moved.members {
            if let Some(leg) = self.legs.get_mut(uid) {
                leg.call = keep.clone();
            }
        }
        let target = self.calls.entry(keep.clone()).or_default();
        target.members.extend(moved.members);
        target.transferred |= moved.transferred;
        let kept_is_a = keep == ca;
        if moved.calldata.is_some() && (target.calldata.is_none() || !kept_is_a) {
            target.calldata = moved.calldata;
            target.context = moved.context;
        }
    }

    fn hangup(&mut self, uid: &str, out: &mut Vec<Notification>) {
        let Some(leg) = self.legs.remove(uid) else {
            return;
        };
        Self::notify(out, &leg, Kind::Hangup);
        for b in &leg.bridges {
            if let Some(members) = self.bridges.get_mut(b) {
                members.retain(|m| m != uid);
                if members.is_empty() {
                    self.bridges.remove(b);
                }
            }
        }
        if self.by_channel.get(&leg.channel).is_some_and(|u| u == uid) {
            self.by_channel.remove(&leg.channel);
        }
        self.leave_call(&leg.call, uid);
    }
}

mod link;
mod notification;

#[cfg(test)]
mod tests;
