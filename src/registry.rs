//! Which logged-in agent is on which connection: `EXT` → client, plus user names for the duplicate-login
//! check. Pure core, owned by the dispatcher thread (no locks: only that thread touches it).
//!
//! Registrations are removed by client id, so one connection's logout can never remove another's
//! registration (docs/ORIGINAL.md bug 16).

use std::collections::HashMap;

/// Identifies one accepted connection for its whole life.
pub type ClientId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub username: String,
    pub ext: String,
}

#[derive(Debug, Default)]
pub struct Registry {
    by_ext: HashMap<String, ClientId>,
    /// ASCII-lowercased user name → connection: the duplicate-login check in O(1).
    by_user: HashMap<String, ClientId>,
    agents: HashMap<ClientId, Agent>,
}

impl Registry {
    /// Is `username` logged in (ASCII case-insensitive, like the database's default collation)?
    pub fn user_logged_in(&self, username: &str) -> bool {
        self.by_user.contains_key(&username.to_ascii_lowercase())
    }

    /// Registers `id` as `username` on `ext`; false if the user, the extension or the connection is
    /// already registered.
    pub fn register(&mut self, id: ClientId, username: &str, ext: &str) -> bool {
        if self.agents.contains_key(&id)
            || self.by_ext.contains_key(ext)
            || self.user_logged_in(username)
        {
            return false;
        }
        self.by_ext.insert(ext.to_string(), id);
        self.by_user.insert(username.to_ascii_lowercase(), id);
        self.agents.insert(
            id,
            Agent {
                username: username.to_string(),
                ext: ext.to_string(),
            },
        );
        true
    }

    /// Forgets whatever `id` registered.
    pub fn remove(&mut self, id: ClientId) -> Option<Agent> {
        let agent = self.agents.remove(&id)?;
        self.by_ext.remove(&agent.ext);
        self.by_user.remove(&agent.username.to_ascii_lowercase());
        Some(agent)
    }

    /// The connection logged in on `ext` (exact, case-sensitive match, as the original).
    pub fn client_for(&self, ext: &str) -> Option<ClientId> {
        self.by_ext.get(ext).copied()
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lookup_remove() {
        let mut r = Registry::default();
        assert!(r.register(1, "test", "SIP/201"));
        assert_eq!(r.client_for("SIP/201"), Some(1));
        assert_eq!(r.client_for("sip/201"), None, "routing is case-sensitive");
        assert!(r.user_logged_in("TEST"));
        assert!(!r.register(2, "Test", "SIP/202"), "same user");
        assert!(!r.register(2, "other", "SIP/201"), "same extension");
        assert!(!r.register(1, "other", "SIP/203"), "same connection");
        assert!(r.register(2, "other", "SIP/202"));
        assert_eq!(r.len(), 2);
        assert_eq!(r.remove(1).map(|a| a.ext), Some("SIP/201".into()));
        assert_eq!(r.remove(1), None);
        assert_eq!(
            r.client_for("SIP/202"),
            Some(2),
            "other registration untouched"
        );
        assert!(r.register(3, "test", "SIP/201"));
    }
}
