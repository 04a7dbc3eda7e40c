//! The hand-written expected notifications (tests/expected/) and an independent formatter for them.

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Independent formatter for spec §4.1 (not the server's code): field order, `<`/`>` removed from
/// caller IDs, the five XML escapes, control characters as spaces, non-ASCII as `&#N;`.
pub fn wire(id: &str, fields: &[(String, String)]) -> String {
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

pub struct Expected {
    pub agents: Vec<String>,
    pub lines: Vec<String>,
    /// `# compare: per-leg`: only the order within each uniqueid is fixed.
    pub per_leg: bool,
    /// (agent, exact wire bytes) per notification, in file order.
    pub wire: Vec<(String, String)>,
}

/// Lines grouped by the uniqueid they carry, order kept within each group.
pub fn by_leg<S: AsRef<str>>(lines: &[S]) -> std::collections::BTreeMap<String, Vec<String>> {
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

pub fn expected(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut agents = Vec::new();
    let mut lines = Vec::new();
    let mut raw = Vec::new();
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
        let exact = wire(cols[1], &fields);
        raw.push((cols[0].to_string(), exact.clone()));
        let w = exact.replace('\n', "\\n").replace('\t', "\\t");
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
        wire: raw,
    }
}

pub fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in [
        "asterisk-1.4",
        "asterisk-11.25.3",
        "asterisk-20.20.1",
        "asterisk-22.10.1",
        "asterisk-22.10.1-phones",
    ] {
        for e in std::fs::read_dir(root().join("fixtures/ami").join(dir))
            .unwrap()
            .flatten()
        {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("ami") {
                // `NAME.ctimanager.ami` → `NAME.ctimanager.expected` (not `NAME.expected`).
                let stem = p.file_stem().unwrap().to_string_lossy();
                let exp = root()
                    .join("expected")
                    .join(dir)
                    .join(format!("{stem}.expected"));
                out.push((p, exp));
            }
        }
    }
    out.sort();
    out
}
