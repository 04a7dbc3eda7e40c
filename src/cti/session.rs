//! Per-client state machine (docs/ORIGINAL.md §3.3–3.5): connected → user given → authenticated → closed.
//!
//! Pure core: [`Session::handle`] takes one command line and an [`Env`] (the store and the
//! dispatcher's registry, behind a trait so tests use fakes) and returns the one reply to send, if
//! any, and whether to close. Run by a `client-N` reader thread.
//!
//! Departures from the original, all invisible to its client: a `USER` on an authenticated session is
//! refused (`101 KO`) instead of leaving a stale registration (docs/ORIGINAL.md bug 16); `ORIG` before login is answered
//! but never reaches Asterisk (docs/ORIGINAL.md bug 14); a NULL `HOST` does not fail the login (docs/ORIGINAL.md bug 17).

use super::proto::{self, parse_command, parse_orig, Command, OrigError, OrigRequest};

pub use crate::store::AgentRow;

/// What a session needs from the rest of the server.
pub trait Env {
    /// Is `username` (ASCII case-insensitive) logged in on any connection?
    fn user_logged_in(&mut self, username: &str) -> bool;
    /// Looks the credentials up; `Err` carries a loggable reason (database down, …).
    fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<AgentRow>, String>;
    /// Registers this connection as `username` on `ext`; false if either is taken.
    fn register(&mut self, username: &str, ext: &str) -> bool;
    /// Hands an originate request for `ext` to the AMI link.
    fn originate(&mut self, ext: &str, request: OrigRequest);
    /// Logs why something was refused (never contains a secret).
    fn note(&mut self, message: &str);
    /// Logs something routine (unknown commands), at debug level.
    fn debug(&mut self, _message: &str) {}
    /// Takes one ORIG from the agent's rate (`CTI_ORIGINATE_PER_MINUTE`, `CTI_ORIGINATE_BURST`);
    /// false when it is used up.
    fn orig_allowed(&mut self, _username: &str) -> bool {
        true
    }
    /// Refuses a login before any lookup (password guessing): the reason, or None to go ahead.
    fn throttled(&mut self, _username: &str) -> Option<String> {
        None
    }
    /// The lookup said the credentials are wrong.
    fn login_failed(&mut self, _username: &str) {}
    /// The login succeeded.
    fn login_succeeded(&mut self, _username: &str) {}
    /// One audit line: `event=… key=value …` (the shell adds the connection and the address).
    fn audit(&mut self, _fields: &str) {}
}

/// `"value"` for a log or audit line: control characters escaped, length capped.
fn q(value: &str) -> String {
    crate::logging::quote(value)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Connected,
    UserGiven {
        username: String,
    },
    Authenticated {
        username: String,
        ext: String,
    },
    Closed,
}

/// The result of one command: the reply bytes (at most one) and whether to close afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub reply: Option<&'static [u8]>,
    /// Reply `100 EXT <the EXT this connection is registered under>` ([`proto::ext_line`]).
    pub ext_reply: bool,
    pub close: bool,
}

impl Step {
    fn reply(bytes: &'static [u8]) -> Step {
        Step {
            reply: Some(bytes),
            ext_reply: false,
            close: false,
        }
    }
    const SILENT: Step = Step {
        reply: None,
        ext_reply: false,
        close: false,
    };
}

#[derive(Debug, Default)]
pub struct Session {
    state: State,
    /// Who this connection logged in as (kept after QUIT, for the logout's audit line).
    agent: Option<(String, String)>,
    /// `CTI_ORIGINATE_CONTEXTS`: contexts ORIG may dial into; empty = any.
    originate_contexts: Vec<String>,
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// A session whose ORIG may only dial into `contexts` (empty = any, as the original).
    pub fn with_originate_contexts(contexts: Vec<String>) -> Self {
        Session {
            state: State::Connected,
            agent: None,
            originate_contexts: contexts,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// (user name, EXT) this connection logged in as, if it did.
    pub fn agent(&self) -> Option<(&str, &str)> {
        self.agent.as_ref().map(|(u, e)| (u.as_str(), e.as_str()))
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated { .. })
    }

    /// Handles one line. Empty lines are ignored, as in the original.
    pub fn handle(&mut self, line: &str, env: &mut dyn Env) -> Step {
        if line.is_empty() || self.state == State::Closed {
            return Step::SILENT;
        }
        match parse_command(line) {
            Command::User(name) => self.user(name, env),
            Command::Pass(secret) => self.pass(&secret, env),
            Command::Noop | Command::Helo => Step::reply(proto::OK),
            Command::Quit => {
                self.state = State::Closed;
                Step {
                    reply: Some(proto::BYE),
                    ext_reply: false,
                    close: true,
                }
            }
            Command::Orig(params) => self.orig(&params, env),
            // New (the original has no such command, and ignores it): which EXT the server
            // registered this login under — the cti table's, which may differ from the client's
            // own PhoneExt. Nothing before login, like any unknown command.
            Command::Ext if self.is_authenticated() => Step {
                reply: None,
                ext_reply: true,
                close: false,
            },
            Command::Ext => Step::SILENT,
            Command::Unknown(word) => {
                env.debug(&format!("unknown command {} ignored", q(&word)));
                Step::SILENT
            }
        }
    }

    fn user(&mut self, name: String, env: &mut dyn Env) -> Step {
        if name.is_empty() {
            return Step::reply(proto::ERROR);
        }
        if let State::Authenticated { username, .. } = &self.state {
            env.note(&format!(
                "USER {} refused: this connection is already logged in as {}",
                q(&name),
                q(username)
            ));
            return Step::reply(proto::KO);
        }
        if env.user_logged_in(&name) {
            env.note(&format!(
                "USER {} refused: already logged in on another connection",
                q(&name)
            ));
            self.state = State::Connected;
            return Step::reply(proto::KO);
        }
        self.state = State::UserGiven { username: name };
        Step::reply(proto::OK)
    }

    fn pass(&mut self, secret: &str, env: &mut dyn Env) -> Step {
        let username = match &self.state {
            State::UserGiven { username } => username.clone(),
            State::Authenticated { .. } => {
                env.note("PASS refused: already logged in");
                return Step::reply(proto::KO);
            }
            _ => {
                env.note("PASS before USER refused");
                return Step::reply(proto::KO);
            }
        };
        if secret.is_empty() {
            return Step::reply(proto::ERROR);
        }
        // A failed PASS discards the user, as the original does.
        self.state = State::Connected;
        let fail = |env: &mut dyn Env, reason: &str, detail: &str| {
            env.audit(&format!(
                "event=login_failed user={} reason={reason}",
                q(&username)
            ));
            env.note(&format!("login of {} failed: {detail}", q(&username)));
            Step::reply(proto::KO)
        };
        if let Some(why) = env.throttled(&username) {
            return fail(env, "throttled", &format!("{why} (no database lookup)"));
        }
        let row = match env.authenticate(&username, secret) {
            Ok(Some(row)) => row,
            Ok(None) => {
                env.login_failed(&username);
                return fail(env, "wrong_secret", "unknown user or wrong secret");
            }
            Err(reason) => return fail(env, "database", &reason),
        };
        let ext = match row.ext.as_deref().map(str::trim) {
            Some(ext) if !ext.is_empty() => ext.to_string(),
            _ => {
                return fail(
                    env,
                    "no_ext",
                    "the cti row has no EXT (the client writes it before logging in)",
                )
            }
        };
        if !env.register(&row.username, &ext) {
            return fail(
                env,
                "already_logged_in",
                &format!("user or extension {} already logged in", q(&ext)),
            );
        }
        env.login_succeeded(&row.username);
        env.audit(&format!(
            "event=login user={} ext={}",
            q(&row.username),
            q(&ext)
        ));
        self.agent = Some((row.username.clone(), ext.clone()));
        self.state = State::Authenticated {
            username: row.username,
            ext,
        };
        Step::reply(proto::LOGGED_IN)
    }

    fn orig(&mut self, params: &str, env: &mut dyn Env) -> Step {
        let request = match parse_orig(params) {
            Ok(r) => r,
            Err(OrigError::Malformed) => return Step::reply(proto::ERROR),
            Err(OrigError::Refused(why)) => {
                env.note(&format!("ORIG {} refused: {why}", q(params)));
                return Step::reply(proto::OK);
            }
        };
        if !self.originate_contexts.is_empty()
            && !self.originate_contexts.contains(&request.context)
        {
            env.note(&format!(
                "ORIG {} refused: context {} is not in CTI_ORIGINATE_CONTEXTS",
                q(params),
                q(&request.context)
            ));
            return Step::reply(proto::OK);
        }
        match &self.state {
            State::Authenticated { ext, username } => {
                let ext = ext.clone();
                if !env.orig_allowed(username) {
                    // The same words every time, so that the connection's summary folds them.
                    env.note(&format!(
                        "ORIG by {} refused: faster than CTI_ORIGINATE_PER_MINUTE and \
                         CTI_ORIGINATE_BURST allow; nothing sent to Asterisk",
                        q(username)
                    ));
                    return Step::reply(proto::OK);
                }
                env.audit(&format!(
                    "event=originate user={} ext={} number={} context={} priority={}",
                    q(username),
                    q(&ext),
                    q(&request.exten),
                    q(&request.context),
                    q(&request.priority)
                ));
                env.originate(&ext, request);
            }
            _ => env.note("ORIG before login refused: nothing sent to Asterisk"),
        }
        Step::reply(proto::OK)
    }
}

#[cfg(test)]
mod tests;
