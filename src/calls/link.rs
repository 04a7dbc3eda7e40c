//! The `Link` rules of the call tracker: who gets the screen pop, with which caller, context and
//! calldata, and when (1.4 `Link` / 1.6–11 `Bridge` events; 12+ answered dial + shared bridge).
//! Part of the pure core in `calls`.

use super::{present, Call, Kind, Notification, Tracker};

impl Tracker {
    /// The Link of `agent` with `peer`: caller ID, context and calldata, remembered on the leg.
    pub(super) fn send_link(
        &mut self,
        agent: &str,
        peer: Option<&str>,
        out: &mut Vec<Notification>,
    ) {
        let peer_leg = peer.and_then(|p| self.legs.get(p)).cloned();
        let Some(leg) = self.legs.get(agent) else {
            return;
        };
        if leg.linked {
            return;
        }
        let calls: Vec<&Call> = [Some(&leg.call), peer_leg.as_ref().map(|p| &p.call)]
            .into_iter()
            .flatten()
            .filter_map(|c| self.calls.get(c))
            .collect();
        let calldata = calls.iter().find_map(|c| c.calldata.clone());
        let call_context = calls
            .iter()
            .find(|c| c.calldata.is_some())
            .and_then(|c| c.context.clone());
        // A dialed leg shows its dialer's caller ID; any other (a queue member in 1.4/11, a phone that
        // picked the call up) shows the party it is now bridged with.
        let peer_cid = peer_leg
            .as_ref()
            .and_then(|p| p.own_cid.clone())
            .filter(present);
        let shown = if leg.dialed {
            leg.shown_cid.clone().or(peer_cid)
        } else {
            peer_cid.or_else(|| leg.shown_cid.clone())
        };
        let context = call_context
            .or_else(|| peer_leg.as_ref().and_then(|p| p.context.clone()))
            .or_else(|| leg.context.clone());
        let Some(leg) = self.legs.get_mut(agent) else {
            return;
        };
        leg.linked = true;
        leg.late = false;
        leg.shown_cid = shown;
        leg.context = context;
        if leg.appdata.is_none() {
            leg.appdata = calldata;
        }
        Self::notify(out, leg, Kind::Link);
    }

    /// 1.4 `Link` / 1.6–11 `Bridge`: leg 2 is the called side.
    pub(super) fn link_event(&mut self, uid1: &str, uid2: &str, out: &mut Vec<Notification>) {
        if !self.legs.contains_key(uid2) {
            self.odd("Link of a channel never seen before ignored", uid2);
            return;
        }
        self.join(uid1, uid2);
        let peer = self.legs.contains_key(uid1).then_some(uid1);
        if self.legs.get(uid2).is_some_and(|l| l.linked) {
            // Bridged again: a re-bridge with the same party sends nothing (the original opened the
            // CRM page once per re-bridge); a new party (an attended transfer completed by a
            // masquerade) gets one more Link naming it.
            self.relink_if_new_party(uid2, uid1, out);
            return;
        }
        self.send_link(uid2, peer, out);
    }

    /// An agent leg already linked is now bridged with `peer`: one Link if `peer`'s caller is not the
    /// one the agent was shown.
    fn relink_if_new_party(&mut self, uid: &str, peer: &str, out: &mut Vec<Notification>) {
        let Some(cid) = self
            .legs
            .get(peer)
            .and_then(|p| p.own_cid.clone())
            .filter(present)
        else {
            return;
        };
        let call = self
            .legs
            .get(uid)
            .and_then(|l| self.calls.get(&l.call))
            .cloned();
        let Some(leg) = self.legs.get_mut(uid) else {
            return;
        };
        if leg.shown_cid.as_ref().is_some_and(|c| c.num == cid.num) {
            return;
        }
        leg.shown_cid = Some(cid);
        // The call now joined with the new party's: its calldata, if the leg has none yet.
        if let Some(Call {
            calldata: Some(data),
            context,
            ..
        }) = call
        {
            if leg.appdata.is_none() {
                leg.appdata = Some(data);
                leg.context = context.or(leg.context.take());
            }
        }
        Self::notify(out, leg, Kind::Link);
    }

    /// 12+: `uid` answered a dial and shares a bridge with another leg: its Link.
    pub(super) fn link_bridged(&mut self, uid: &str, out: &mut Vec<Notification>) {
        let Some(leg) = self.legs.get(uid) else {
            return;
        };
        if !leg.answered || leg.linked {
            return;
        }
        let peer = leg.bridges.iter().find_map(|b| {
            self.bridges
                .get(b)
                .and_then(|members| members.iter().find(|m| *m != uid).cloned())
        });
        if let Some(peer) = peer {
            self.send_link(uid, Some(&peer), out);
        }
    }

    pub(super) fn leave(&mut self, bridge: &str, uid: &str) {
        if let Some(members) = self.bridges.get_mut(bridge) {
            members.retain(|m| m != uid);
            if members.is_empty() {
                self.bridges.remove(bridge);
            }
        }
        if let Some(leg) = self.legs.get_mut(uid) {
            leg.bridges.remove(bridge);
        }
    }
}
