//! Command line: flags (case-insensitive, like the original's `ToLower()` comparison) and the usage
//! text. Pure core; `app` acts on the result.

use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub help: bool,
    pub version: bool,
    pub debug: bool,
    pub dumpconfig: bool,
    pub check_config: bool,
    /// `--connect` (with `--check-config`): also log in to the database and to Asterisk.
    pub connect: bool,
    pub config: Option<PathBuf>,
    /// `--record-ami FILE`: append every byte received from Asterisk to FILE.
    pub record_ami: Option<PathBuf>,
    /// `--replay FILE`: print what each agent would be sent, then exit.
    pub replay: Option<PathBuf>,
    /// `--agent EXT` (repeatable): only these agents in `--replay`'s output.
    pub agents: Vec<String>,
}

pub const USAGE: &str = "
Usage:
-----------------------------------------------------------------
astcti-server [--config PATH] [--debug] [--dumpconfig] [--record-ami FILE]
astcti-server --check-config [--connect] [--config PATH]
astcti-server --replay FILE [--agent EXT]...
astcti-server --version | --help
-----------------------------------------------------------------
--debug        : enables extensive debug on console (stderr)
--dumpconfig   : after the AMI login, logs extensions.conf, sip.conf,
                 pjsip.conf (Asterisk 12+) and queues.conf as
                 Asterisk reports them (secrets masked)
--config PATH  : the configuration file; default AstCTIServer.xml
                 beside the executable, then in the working
                 directory, then AstCTIServer.exe.config beside
                 the executable
--record-ami FILE : appends every byte received from Asterisk,
                 unchanged, to FILE (a capture for --replay
                 and ami-replay)
--replay FILE  : prints every notification each agent would get
                 from a recorded AMI stream (no database, no
                 sockets), one line each: AGENT<TAB>wire bytes
                 with LF as \\n and TAB as \\t; then exits
--agent EXT    : with --replay, only this agent (repeatable)
--check-config : validates the configuration, prints it with
                 passwords masked, exits 0 (valid) or 2 (invalid)
--connect      : with --check-config, also logs in to the database
                 and to Asterisk's manager and says which works;
                 exits 1 if either does not
--version      : prints the version
--help         : prints this text
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let lower = arg.to_ascii_lowercase();
        if let Some(path) = lower
            .strip_prefix("--config=")
            .map(|_| &arg["--config=".len()..])
        {
            o.config = Some(config_path("--config", path)?);
            continue;
        }
        match lower.as_str() {
            "--help" | "-h" => o.help = true,
            "--version" | "-v" => o.version = true,
            "--debug" => o.debug = true,
            "--dumpconfig" => o.dumpconfig = true,
            "--check-config" => o.check_config = true,
            "--connect" => o.connect = true,
            "--config" => {
                let path = it.next().ok_or("--config needs a file path")?;
                o.config = Some(config_path("--config", path)?);
            }
            "--replay" => {
                let path = it.next().ok_or("--replay needs a file path")?;
                o.replay = Some(config_path("--replay", path)?);
            }
            "--agent" => {
                let ext = it
                    .next()
                    .filter(|e| !e.is_empty())
                    .ok_or("--agent needs an extension, e.g. SIP/201")?;
                o.agents.push(ext.clone());
            }
            "--record-ami" => {
                let path = it.next().ok_or("--record-ami needs a file path")?;
                o.record_ami = Some(config_path("--record-ami", path)?);
            }
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if o.connect && !o.check_config {
        return Err("--connect goes with --check-config".into());
    }
    Ok(o)
}

/// A path argument of `flag`; empty is an error naming that flag.
fn config_path(flag: &str, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err(format!("{flag} needs a file path"));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_are_case_insensitive() {
        let o = p(&["--DEBUG", "--DumpConfig", "--check-config"]).unwrap();
        assert!(o.debug && o.dumpconfig && o.check_config);
        assert!(p(&["--Help"]).unwrap().help);
        assert!(p(&["--version"]).unwrap().version);
    }

    #[test]
    fn config_path_forms() {
        assert_eq!(
            p(&["--config", "/a/B.xml"]).unwrap().config,
            Some("/a/B.xml".into())
        );
        assert_eq!(
            p(&["--CONFIG=/a/B.xml"]).unwrap().config,
            Some("/a/B.xml".into())
        );
        assert!(p(&["--config"]).is_err());
        assert!(p(&["--config="]).is_err());
        assert_eq!(
            p(&["--record-ami", "x.ami"]).unwrap().record_ami,
            Some("x.ami".into())
        );
        assert!(p(&["--record-ami"]).is_err());
        let o = p(&[
            "--replay", "f.ami", "--agent", "SIP/201", "--agent", "SIP/202",
        ])
        .unwrap();
        assert_eq!(o.replay, Some("f.ami".into()));
        assert_eq!(o.agents, vec!["SIP/201", "SIP/202"]);
        assert!(p(&["--agent"]).is_err());
        assert_eq!(
            p(&["--replay", ""]).unwrap_err(),
            "--replay needs a file path",
            "the flag that needs it is named"
        );
        assert!(p(&["--check-config", "--connect"]).unwrap().connect);
        assert!(p(&["--connect"]).is_err());
    }

    #[test]
    fn the_usage_shows_every_flag() {
        for flag in [
            "--config",
            "--debug",
            "--dumpconfig",
            "--record-ami",
            "--check-config",
            "--connect",
            "--replay",
            "--agent",
            "--version",
            "--help",
        ] {
            let first_lines: String = USAGE.lines().take(7).collect();
            assert!(first_lines.contains(flag), "{flag} in the usage lines");
        }
    }

    #[test]
    fn unknown_flags_are_errors() {
        let e = p(&["--frobnicate"]).unwrap_err();
        assert!(e.contains("--frobnicate"), "{e}");
        assert!(p(&["extra"]).is_err());
    }
}
