//! What poked generates from its command-line definitions (SPEC §8): completion scripts that a
//! real bash loads and completes with, and man pages that groff renders, listing every command.

use std::path::Path;
use std::process::Command;

use crate::common::{must, tool};

/// The commands `poked --help` lists: the same clap definitions, read another way.
fn commands() -> Vec<String> {
    let help = must(Path::new("/nonexistent/poked.db"), &["--help"]);
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(listed.len() > 20, "{help}");
    listed
}

/// What bash completes for the words `line` (the last one being completed), with poked's
/// completion script loaded.
fn bash_completes(script: &Path, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        r#"source '{}' || exit 9
        complete -p poked >/dev/null || exit 8
        function=$(complete -p poked | sed -n 's/.*-F \([^ ]*\).*/\1/p')
        COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
        "$function" poked "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\n' "${{COMPREPLY[@]}}""#,
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn bash_loads_the_completions_and_completes_commands_and_options() {
    let Some(_) = tool("bash", "bash") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("poked.bash");
    std::fs::write(
        &script,
        must(Path::new("/nonexistent/poked.db"), &["completions", "bash"]),
    )
    .unwrap();

    let mut got = bash_completes(&script, &["poked", "r"]);
    got.sort();
    assert_eq!(got, ["reset", "resume", "rm", "run"]);
    let all = bash_completes(&script, &["poked", ""]);
    for command in commands() {
        assert!(
            all.contains(&command),
            "`poked <TAB>` does not offer {command}: {all:?}"
        );
    }
    assert_eq!(
        bash_completes(&script, &["poked", "run", "--me"]),
        ["--metrics-listen"]
    );
    let mut shells = bash_completes(&script, &["poked", "completions", ""]);
    shells.retain(|w| !w.starts_with('-'));
    assert_eq!(shells, ["bash", "elvish", "fish", "powershell", "zsh"]);
}

#[test]
fn every_shell_gets_a_script_that_knows_every_command() {
    let commands = commands();
    // Each shell's own form of a subcommand entry: a bare name would be found inside other
    // words ("poke" in "poked", "man" in "command").
    type Entry = fn(&str) -> String;
    let entry: [(&str, Entry); 5] = [
        ("bash", |c| format!("poked__subcmd__{c}")),
        ("zsh", |c| format!("'{c}:")),
        ("fish", |c| format!("-a \"{c}\"")),
        ("elvish", |c| format!("cand {c} '")),
        ("powershell", |c| format!("[CompletionResult]::new('{c}', '{c}'")),
    ];
    for (shell, entry) in entry {
        let script = must(Path::new("/nonexistent/poked.db"), &["completions", shell]);
        for command in &commands {
            let wanted = entry(command);
            assert!(script.contains(&wanted), "{shell}: no {wanted}");
        }
        assert!(script.contains("metrics-listen"), "{shell}: no --metrics-listen");
    }
}

/// Renders a man page with groff as `man` would (`-k`: UTF-8 input through preconv), as
/// words; fails on any warning.
fn render(groff: &Path, roff: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.1");
    std::fs::write(&page, roff).unwrap();
    let out = Command::new(groff)
        .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(&page)
        .output()
        .expect("run groff");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "groff: {stderr}"
    );
    // One space between words: the page is justified.
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_man_pages_render_and_list_every_command() {
    let Some(groff) = tool("groff", "groff-base") else {
        return;
    };
    let db = Path::new("/nonexistent/poked.db");
    let page = render(&groff, &must(db, &["man"]));
    assert!(
        page.contains("NAME poked - A crash-safe backoff scheduler"),
        "{page}"
    );
    let section = page.split(" SUBCOMMANDS ").nth(1).expect("a SUBCOMMANDS section");
    for command in commands() {
        assert!(
            section.contains(&format!("poked-{command}(1)")),
            "poked(1) does not list {command}"
        );
        // Each page it names is one `poked man` prints.
        let sub = render(&groff, &must(db, &["man", &command]));
        assert!(
            sub.contains(&format!("poked-{command} - ")),
            "poked-{command}(1): {sub}"
        );
    }
    let run = render(&groff, &must(db, &["man", "run"]));
    assert!(run.contains("--metrics-listen <ADDR>"), "{run}");
}
