//! Every capture's hand-written expected notifications (tests/expected/) against `--replay`'s code
//! path and against the real binary's `--replay` output.

use std::path::{Path, PathBuf};

use astcti_server::offline;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Independent formatter for spec §4.1 (not the server's code): field order, `<`/`>` removed from
/// caller IDs, the five XML escapes, control characters as spaces, non-ASCII as `&#N;`.
fn wire(id: &str, fields: &[(String, String)]) -> String {
    let order = [
        "uniqueid",
        "channel",
        "calleridnum",
        "calleridname",
        "context",
        "appdata",
        "state",
    ];
    let mut s = format!("<event id=\"{id}\">\n<call>");
    for name in order {
        let Some((_, v)) = fields.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let mut esc = String::new();
        for c in v.chars() {
            let caller = name.starts_with("callerid");
            match c {
                '<' | '>' if caller => {}
                '<' => esc += "&lt;",
                '>' => esc += "&gt;",
                '&' => esc += "&amp;",
                '"' => esc += "&quot;",
                '\'' => esc += "&apos;",
                c if (c as u32) < 0x20 || c as u32 == 0x7f => esc.push(' '),
                c if (c as u32) < 0x80 => esc.push(c),
                c => esc += &format!("&#{};", c as u32),
            }
        }
        s += &format!("\t<{name}>{esc}</{name}>\n");
    }
    s + "</call></event>\n"
}

struct Expected {
    agents: Vec<String>,
    lines: Vec<String>,
    /// `# compare: per-leg`: only the order within each uniqueid is fixed.
    per_leg: bool,
}

/// Lines grouped by the uniqueid they carry, order kept within each group.
fn by_leg<S: AsRef<str>>(lines: &[S]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in lines {
        let l = l.as_ref();
        let uid = l
            .split("<uniqueid>")
            .nth(1)
            .and_then(|r| r.split("</uniqueid>").next())
            .unwrap_or("")
            .to_string();
        map.entry(uid).or_default().push(l.to_string());
    }
    map
}

fn expected(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut agents = Vec::new();
    let mut lines = Vec::new();
    let per_leg = text.lines().any(|l| l.trim() == "# compare: per-leg");
    for (n, line) in text.lines().enumerate() {
        if let Some(a) = line.strip_prefix("# agents:") {
            agents = a.split_whitespace().map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 3,
            "{}:{}: too few columns",
            path.display(),
            n + 1
        );
        let fields: Vec<(String, String)> = cols[2..]
            .iter()
            .map(|f| {
                let (k, v) = f
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}:{}: {f:?}", path.display(), n + 1));
                (k.to_string(), v.to_string())
            })
            .collect();
        let w = wire(cols[1], &fields)
            .replace('\n', "\\n")
            .replace('\t', "\\t");
        lines.push(format!("{}\t{w}", cols[0]));
    }
    assert!(
        !agents.is_empty(),
        "{}: no '# agents:' line",
        path.display()
    );
    Expected {
        agents,
        lines,
        per_leg,
    }
}

fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in ["asterisk-1.4", "asterisk-11.25.3", "asterisk-20.20.1"] {
        for e in std::fs::read_dir(root().join("fixtures/ami").join(dir))
            .unwrap()
            .flatten()
        {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("ami") {
                let exp = root()
                    .join("expected")
                    .join(dir)
                    .join(p.file_stem().unwrap())
                    .with_extension("expected");
                out.push((p, exp));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_fixture_gives_exactly_the_expected_notifications() {
    let mut failures = Vec::new();
    for (ami, exp) in pairs() {
        if !exp.exists() {
            failures.push(format!("{}: no expected file", exp.display()));
            continue;
        }
        let e = expected(&exp);
        let got = offline::replay(&std::fs::read(&ami).unwrap(), &e.agents);
        let got: Vec<&str> = got.lines().collect();
        if e.per_leg {
            if got.len() != e.lines.len() || by_leg(&got) != by_leg(&e.lines) {
                failures.push(format!(
                    "{}: per-leg comparison failed ({} lines, {} expected)",
                    ami.display(),
                    got.len(),
                    e.lines.len()
                ));
            }
            continue;
        }
        if got != e.lines {
            let mut diff = format!("{}:\n", ami.display());
            for i in 0..got.len().max(e.lines.len()) {
                let (g, x) = (
                    got.get(i).copied().unwrap_or("(none)"),
                    e.lines.get(i).map(String::as_str).unwrap_or("(none)"),
                );
                if g != x {
                    diff += &format!("  line {}:\n    got      {g}\n    expected {x}\n", i + 1);
                }
            }
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_binary_replay_flag_prints_the_same() {
    let (ami, exp) = pairs()
        .into_iter()
        .find(|(a, _)| a.ends_with("asterisk-1.4/synthetic-demo100.ami"))
        .unwrap();
    let e = expected(&exp);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_astcti-server"));
    cmd.arg("--replay").arg(&ami);
    for a in &e.agents {
        cmd.arg("--agent").arg(a);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), e.lines);
    // Without --agent every agent key is listed, the Local channels' too.
    let all = std::process::Command::new(env!("CARGO_BIN_EXE_astcti-server"))
        .arg("--replay")
        .arg(root().join("fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.ami"))
        .output()
        .unwrap();
    let text = String::from_utf8(all.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("SIP/201\t")));
    assert!(text
        .lines()
        .any(|l| l.starts_with("Local/100@astctidemo\t")));
}

#[test]
fn the_spec_examples_come_out_byte_for_byte() {
    // Spec §4.3, as C strings, for the synthetic demo (the same values).
    let got = offline::replay(
        &std::fs::read(root().join("fixtures/ami/asterisk-1.4/synthetic-demo100.ami")).unwrap(),
        &["SIP/201".to_string()],
    );
    let link = "SIP/201\t<event id=\"Link\">\\n<call>\\t<uniqueid>1194001092.75</uniqueid>\\n\\t<channel>SIP/201-0821bb20</channel>\\n\\t<calleridnum>202</calleridnum>\\n\\t<calleridname>Demo 3</calleridname>\\n\\t<context>astctidemo</context>\\n\\t<appdata>12345</appdata>\\n</call></event>\\n";
    assert_eq!(got.lines().nth(2), Some(link));
    let newcallerid = "SIP/201\t<event id=\"Newcallerid\">\\n<call>\\t<uniqueid>1194001092.75</uniqueid>\\n\\t<channel>SIP/201-0821bb20</channel>\\n\\t<calleridnum>202</calleridnum>\\n\\t<calleridname>Demo 3</calleridname>\\n</call></event>\\n";
    assert_eq!(got.lines().next(), Some(newcallerid));
}
