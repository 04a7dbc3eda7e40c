use super::*;
use crate::cti::proto::{BYE, ERROR, KO, LOGGED_IN, OK};

#[derive(Default)]
struct Fake {
    logged_in: Vec<String>,
    registered: Vec<(String, String)>,
    originated: Vec<(String, OrigRequest)>,
    notes: Vec<String>,
    db_down: bool,
    auth_calls: usize,
    /// ORIGs the agent's rate still allows (None: no limit).
    dials_left: Option<usize>,
}

impl Env for Fake {
    fn user_logged_in(&mut self, username: &str) -> bool {
        self.logged_in
            .iter()
            .any(|u| u.eq_ignore_ascii_case(username))
    }
    fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<AgentRow>, String> {
        self.auth_calls += 1;
        if self.db_down {
            return Err("database unreachable".into());
        }
        let ext = match username {
            "test" => Some("SIP/201".to_string()),
            "noext" => None,
            "emptyext" => Some(String::new()),
            "taken" => Some("SIP/999".to_string()),
            _ => return Ok(None),
        };
        Ok(
            (secret == "098f6bcd4621d373cade4e832627b4f6").then(|| AgentRow {
                username: username.to_string(),
                ext,
            }),
        )
    }
    fn register(&mut self, username: &str, ext: &str) -> bool {
        if ext == "SIP/999" {
            return false;
        }
        self.registered.push((username.into(), ext.into()));
        true
    }
    fn originate(&mut self, ext: &str, request: OrigRequest) {
        self.originated.push((ext.into(), request));
    }
    fn note(&mut self, message: &str) {
        self.notes.push(message.into());
    }
    fn orig_allowed(&mut self, _username: &str) -> bool {
        match self.dials_left.as_mut() {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

const SECRET: &str = "098f6bcd4621d373cade4e832627b4f6";

fn run(session: &mut Session, env: &mut Fake, line: &str) -> Option<&'static [u8]> {
    session.handle(line, env).reply
}

fn login(env: &mut Fake) -> Session {
    let mut s = Session::new();
    assert_eq!(run(&mut s, env, "USER test"), Some(OK));
    assert_eq!(run(&mut s, env, &format!("PASS {SECRET}")), Some(LOGGED_IN));
    s
}

#[test]
fn good_login_registers_under_ext() {
    let mut env = Fake::default();
    let s = login(&mut env);
    assert!(s.is_authenticated());
    assert_eq!(env.registered, vec![("test".into(), "SIP/201".into())]);
}

#[test]
fn wrong_secret_and_unknown_user_get_ko_and_forget_the_user() {
    let mut env = Fake::default();
    let mut s = Session::new();
    run(&mut s, &mut env, "USER test");
    assert_eq!(run(&mut s, &mut env, "PASS 0000"), Some(KO));
    assert_eq!(s.state(), &State::Connected);
    assert_eq!(
        run(&mut s, &mut env, &format!("PASS {SECRET}")),
        Some(KO),
        "user forgotten"
    );
    run(&mut s, &mut env, "USER nobody");
    assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
    assert!(env.registered.is_empty());
}

#[test]
fn pass_before_user_is_ko_without_db_access() {
    let mut env = Fake::default();
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
    assert_eq!(env.auth_calls, 0);
}

#[test]
fn empty_parameters_are_error() {
    let mut env = Fake::default();
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, "USER"), Some(ERROR));
    assert_eq!(run(&mut s, &mut env, "USER "), Some(ERROR));
    run(&mut s, &mut env, "USER test");
    assert_eq!(run(&mut s, &mut env, "PASS"), Some(ERROR));
    assert_eq!(run(&mut s, &mut env, "PASS "), Some(ERROR));
    assert_eq!(env.auth_calls, 0);
}

#[test]
fn duplicate_login_is_ko() {
    let mut env = Fake {
        logged_in: vec!["test".into()],
        ..Fake::default()
    };
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, "USER test"), Some(KO));
    assert_eq!(run(&mut s, &mut env, "USER TEST"), Some(KO));
}

#[test]
fn register_conflict_is_ko() {
    let mut env = Fake::default();
    let mut s = Session::new();
    run(&mut s, &mut env, "USER taken");
    assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
    assert!(!s.is_authenticated());
}

#[test]
fn null_or_empty_ext_fails_with_a_logged_reason() {
    for user in ["noext", "emptyext"] {
        let mut env = Fake::default();
        let mut s = Session::new();
        run(&mut s, &mut env, &format!("USER {user}"));
        assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
        assert!(
            env.notes.iter().any(|n| n.contains("no EXT")),
            "{:?}",
            env.notes
        );
    }
}

#[test]
fn database_error_is_ko_with_reason() {
    let mut env = Fake {
        db_down: true,
        ..Fake::default()
    };
    let mut s = Session::new();
    run(&mut s, &mut env, "USER test");
    assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
    assert!(env.notes.iter().any(|n| n.contains("database unreachable")));
    assert!(
        env.notes.iter().all(|n| !n.contains(SECRET)),
        "secret logged"
    );
}

#[test]
fn noop_helo_quit() {
    let mut env = Fake::default();
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, "NOOP"), Some(OK));
    assert_eq!(run(&mut s, &mut env, "HELO"), Some(OK));
    let step = s.handle("QUIT", &mut env);
    assert_eq!(
        step,
        Step {
            reply: Some(BYE),
            ext_reply: false,
            close: true
        }
    );
    assert_eq!(run(&mut s, &mut env, "NOOP"), None, "closed");
}

#[test]
fn ext_says_the_registered_ext_after_login_only() {
    let mut env = Fake::default();
    let mut s = Session::new();
    let before = s.handle("EXT", &mut env);
    assert!(
        before.reply.is_none() && !before.ext_reply,
        "nothing before login"
    );
    let mut s = login(&mut env);
    let after = s.handle("ext", &mut env);
    assert!(after.ext_reply && after.reply.is_none() && !after.close);
    let (_, ext) = s.agent().unwrap();
    assert_eq!(
        crate::cti::proto::ext_line(ext),
        format!("100 EXT {ext}\n").into_bytes()
    );
    assert_eq!(
        crate::cti::proto::ext_line("SIP/2\r\n01"),
        b"100 EXT SIP/2??01\n"
    );
}

#[test]
fn unknown_and_empty_lines_get_no_reply() {
    let mut env = Fake::default();
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, "LIST"), None);
    assert_eq!(run(&mut s, &mut env, ""), None);
    let mut s = login(&mut env);
    assert_eq!(run(&mut s, &mut env, "FOO bar"), None);
}

#[test]
fn second_user_or_pass_after_login_is_ko() {
    let mut env = Fake::default();
    let mut s = login(&mut env);
    assert_eq!(run(&mut s, &mut env, "USER other"), Some(KO));
    assert_eq!(run(&mut s, &mut env, &format!("PASS {SECRET}")), Some(KO));
    assert!(s.is_authenticated(), "the existing login stays");
}

#[test]
fn orig_before_login_never_reaches_ami() {
    let mut env = Fake::default();
    let mut s = Session::new();
    assert_eq!(run(&mut s, &mut env, "ORIG 202|astctidemo|1"), Some(OK));
    run(&mut s, &mut env, "USER test");
    assert_eq!(run(&mut s, &mut env, "ORIG 202|astctidemo|1"), Some(OK));
    assert_eq!(run(&mut s, &mut env, "ORIG"), Some(ERROR));
    assert_eq!(run(&mut s, &mut env, "ORIG 202|x"), Some(ERROR));
    assert!(env.originated.is_empty());
}

#[test]
fn orig_after_login_is_handed_over_with_the_agents_ext() {
    let mut env = Fake::default();
    let mut s = login(&mut env);
    assert_eq!(run(&mut s, &mut env, "ORIG 202|astctidemo|"), Some(OK));
    assert_eq!(
        run(&mut s, &mut env, "ORIG 202\u{1}|astctidemo|1"),
        Some(OK),
        "refused, still 100 OK"
    );
    assert_eq!(
        env.originated,
        vec![(
            "SIP/201".to_string(),
            OrigRequest {
                exten: "202".into(),
                context: "astctidemo".into(),
                priority: "1".into()
            }
        )]
    );
}

#[test]
fn orig_outside_the_allowed_contexts_is_refused_with_100_ok() {
    let mut env = Fake::default();
    let mut s = Session::with_originate_contexts(vec!["astctidemo".into()]);
    run(&mut s, &mut env, "USER test");
    run(&mut s, &mut env, &format!("PASS {SECRET}"));
    assert_eq!(run(&mut s, &mut env, "ORIG 202|from-internal|1"), Some(OK));
    assert_eq!(
        run(&mut s, &mut env, "ORIG 202||1"),
        Some(OK),
        "default context is not allowed either"
    );
    assert!(env.originated.is_empty());
    assert!(env
        .notes
        .iter()
        .any(|n| n.contains("CTI_ORIGINATE_CONTEXTS")));
    assert_eq!(run(&mut s, &mut env, "ORIG 202|astctidemo|1"), Some(OK));
    assert_eq!(env.originated.len(), 1);
}

#[test]
fn orig_beyond_the_agents_rate_is_refused_with_100_ok_and_the_same_words() {
    let mut env = Fake {
        dials_left: Some(2),
        ..Fake::default()
    };
    let mut s = login(&mut env);
    for _ in 0..5 {
        assert_eq!(run(&mut s, &mut env, "ORIG 202|astctidemo|1"), Some(OK));
    }
    assert_eq!(env.originated.len(), 2);
    let refused: Vec<&String> = env
        .notes
        .iter()
        .filter(|n| n.contains("CTI_ORIGINATE_PER_MINUTE"))
        .collect();
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|n| *n == refused[0]), "{refused:?}");
}

#[test]
fn orig_with_dialplan_syntax_is_refused_with_100_ok() {
    let mut env = Fake::default();
    let mut s = login(&mut env);
    for bad in [
        "ORIG 202&SIP/trunk/0090|astctidemo|1",
        "ORIG 202,,tTL(1)|astctidemo|1",
        "ORIG ${SHELL(id)}|astctidemo|1",
    ] {
        assert_eq!(run(&mut s, &mut env, bad), Some(OK), "{bad}");
    }
    assert!(env.originated.is_empty());
    assert_eq!(env.notes.len(), 3, "{:?}", env.notes);
}
