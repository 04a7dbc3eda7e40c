//! The docs stay true: every flag they show exists, every repository path they name exists, every
//! configuration key is documented, and README.md gives exactly the two newcomer commands.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docs() -> Vec<(String, String)> {
    let mut out = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    )];
    for e in std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
    {
        let name = format!("docs/{}", e.file_name().to_string_lossy());
        out.push((name, std::fs::read_to_string(e.path()).unwrap()));
    }
    out.push((
        "demo/README.md".into(),
        std::fs::read_to_string(root().join("demo/README.md")).unwrap(),
    ));
    out
}

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The `--flags` on lines that run `program`.
fn flags_after(text: &str, program: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.split(program).nth(1) else {
            continue;
        };
        for word in
            rest.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')' || c == ',')
        {
            if let Some(flag) = word.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap_or("");
                if !flag.is_empty() && flag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    out.push(format!("--{flag}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_flag_shown_for_the_programs_exists() {
    let server = help(env!("CARGO_BIN_EXE_astcti-server"));
    let replay = help(env!("CARGO_BIN_EXE_ami-replay"));
    let client = help(env!("CARGO_BIN_EXE_astcti-demo-client"));
    let mut seen = 0;
    for (name, text) in docs() {
        seen +=
            flags_after(&text, "astcti-server ").len() + flags_after(&text, "ami-replay ").len();
        for flag in flags_after(&text, "astcti-server ") {
            assert!(
                server.contains(&flag),
                "{name}: astcti-server {flag} is not in --help"
            );
        }
        for flag in flags_after(&text, "ami-replay ") {
            assert!(
                replay.contains(&flag),
                "{name}: ami-replay {flag} is not in --help"
            );
        }
        for flag in flags_after(&text, "astcti-demo-client ") {
            assert!(
                client.contains(&flag),
                "{name}: astcti-demo-client {flag} is not in --help"
            );
        }
    }
    assert!(seen >= 10, "only {seen} flags found: the scan is broken");
}

/// The same for the agent's program (built only with the `client` feature, which scripts/test.sh
/// turns on).
#[cfg(feature = "client")]
#[test]
fn every_flag_shown_for_the_agents_program_exists() {
    let client = help(env!("CARGO_BIN_EXE_astcti-client"));
    let mut seen = 0;
    for (name, text) in docs() {
        for flag in flags_after(&text, "astcti-client ") {
            seen += 1;
            assert!(
                client.contains(&flag),
                "{name}: astcti-client {flag} is not in --help"
            );
        }
    }
    assert!(seen >= 5, "only {seen} flags found: the scan is broken");
}

#[test]
fn every_repository_path_named_in_the_docs_exists() {
    let prefixes = [
        "demo/", "docs/", "sql/", "scripts/", "tests/", "src/", "benches/", ".ci/",
    ];
    for (name, text) in docs() {
        for piece in text.split('`') {
            let candidate = piece.trim();
            if candidate.contains(' ') || candidate.contains('*') || candidate.contains('{') {
                continue;
            }
            if prefixes.iter().any(|p| candidate.starts_with(p)) {
                let path = candidate.trim_end_matches(['.', ',', ':']);
                assert!(
                    root().join(path).exists(),
                    "{name}: `{path}` does not exist"
                );
            }
        }
    }
}

#[test]
fn configuration_md_lists_every_key() {
    let text = std::fs::read_to_string(root().join("docs/CONFIGURATION.md")).unwrap();
    let shipped = std::fs::read_to_string(root().join("AstCTIServer.xml")).unwrap();
    let describe = {
        // The keys the server knows are the ones --check-config prints.
        let dir = std::env::temp_dir().join(format!("astcti-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("AstCTIServer.xml"), &shipped).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_astcti-server"))
            .arg("--check-config")
            .current_dir(&dir)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let keys: Vec<&str> = describe
        .lines()
        .filter_map(|l| l.split(" = ").next())
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(keys.len() >= 23, "{keys:?}");
    for key in keys {
        assert!(
            text.contains(&format!("| `{key}` |")),
            "docs/CONFIGURATION.md has no row for {key}"
        );
    }
}

#[test]
fn readme_gives_exactly_the_two_newcomer_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, vec!["demo/run.sh", "scripts/test.sh"]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains("scripts/test.sh"),
        ".ci/run runs the README's test command"
    );
    let test_sh = std::fs::read_to_string(root().join("scripts/test.sh")).unwrap();
    assert!(
        test_sh.contains("demo/run.sh --check"),
        "scripts/test.sh runs the demo end to end"
    );
}

/// Every file under `dir` (recursively) whose name ends in one of `exts`.
fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, exts, out);
        } else if exts.iter().any(|x| p.to_string_lossy().ends_with(x)) {
            out.push(p);
        }
    }
}

#[test]
fn every_section_and_bug_reference_resolves_in_original_md() {
    let original = std::fs::read_to_string(root().join("docs/ORIGINAL.md")).unwrap();
    let sections: Vec<String> = original
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.split('§').nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    let bugs: Vec<String> = original
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(bugs.len(), 30, "the original's 30 bugs, one row each");
    let mut files = Vec::new();
    for dir in ["src", "tests", "docs", "demo", "benches", "scripts"] {
        files_under(&root().join(dir), &[".rs", ".md", ".sh"], &mut files);
    }
    files.push(root().join("README.md"));
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(root()).unwrap().display().to_string();
        if name.contains("asterisk-22.10.1")
            || name.contains("asterisk-20.20.1")
            || name == "tests/docs.rs"
        {
            continue; // the captures' own READMEs, copied unchanged, cite the source specification
        }
        for (i, _) in text.match_indices('§') {
            let r: String = text[i + '§'.len_utf8()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let r = r.trim_end_matches('.');
            if r.is_empty() {
                continue;
            }
            checked += 1;
            assert!(
                sections
                    .iter()
                    .any(|s| s == r || s.starts_with(&format!("{r}."))),
                "{name}: §{r} is not a section of docs/ORIGINAL.md"
            );
        }
        for (i, _) in text.match_indices("bug ") {
            let n: String = text[i + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !n.is_empty() && text[..i].ends_with("ORIGINAL.md ") {
                checked += 1;
                assert!(
                    bugs.contains(&n),
                    "{name}: bug {n} is not in docs/ORIGINAL.md"
                );
            }
        }
        assert!(
            !text.contains("../shared/") && !text.contains("spec/original-astcti.md"),
            "{name} points outside the repository"
        );
    }
    assert!(checked > 20, "{checked} references checked");
}

/// The client's own dependencies (docs/DEPENDENCIES.md) never enter the server's build: the default
/// features' tree has none of them, the `client` feature's has each, on every platform. Not
/// `--offline`: a fresh cargo cache lacks the other platforms' crates (macOS's, say), which
/// `cargo tree --target all` must read; scripts/test.sh fetches them all first (`cargo fetch`),
/// elsewhere cargo fetches what is missing.
#[test]
fn the_client_dependencies_stay_out_of_the_server_build() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |features: &[&str]| -> String {
        let out = Command::new(&cargo)
            .args([
                "tree",
                "--locked",
                "--edges",
                "normal,build",
                "--prefix",
                "none",
                "--target",
                "all",
            ])
            .args(features)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let server = names(&tree(&[]));
    let client = names(&tree(&["--features", "client"]));
    for c in ["notify-rust", "open", "interprocess", "zbus"] {
        assert!(!server.iter().any(|n| n == c), "{c} in the server's build");
        assert!(
            client.iter().any(|n| n == c),
            "{c} not in the client's build"
        );
    }
}
