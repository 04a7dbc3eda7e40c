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
    for e in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
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
