//! `poked top` in a real terminal: a private tmux server's pane (see `common::Tmux`), read with
//! `capture-pane`, keys sent with `send-keys`. Every step waits for something it can see (text
//! on screen, a row in the database, the pane's exit status), never for a fixed time. How the
//! screen is laid out is tested beside the drawing code (`src/commands/top/draw.rs`).

use std::time::Duration;

use crate::common::{Env, PROMPT, Tmux, assert_error, output_within, poked, read_only_for_poked, wait_for};
use crate::harness::PATIENCE;

/// `poked top` on `env`'s database in a new 100×30 session `top`; `wrapper` runs it as another
/// user. Its exit status goes to a file (tmux loses a pane's status when the terminal closes
/// before the process is reaped), and the pane's terminal stays live after it ends (a `sleep`
/// takes its place), so what top left on it can be read.
fn start_top(tmux: &Tmux, env: &Env, wrapper: &[&str]) {
    let bin = assert_cmd::cargo::cargo_bin!("poked")
        .to_str()
        .unwrap()
        .to_string();
    let db = format!("POKED_DB={}", env.db.display());
    let mut words: Vec<&str> = vec!["env", "-u", "POKED_NOW", "-u", "POKED_DRAW", "NO_COLOR=1", &db];
    words.extend(wrapper);
    words.extend([bin.as_str(), "top"]);
    let status = status_file(env);
    let command = format!(
        "{}; echo $? > {}; exec sleep 600",
        shell_words::join(&words),
        shell_words::quote(status.to_str().unwrap())
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "30",
        &command,
        ";",
        "set-option",
        "-t",
        "top",
        "remain-on-exit",
        "on",
    ]);
}

fn status_file(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("top-status")
}

/// Waits until the pane shows `text`.
fn wait_for_screen(tmux: &Tmux, text: &str) {
    assert!(
        tmux.shows_within("top", text, PATIENCE),
        "{text:?} never showed:\n{}",
        tmux.pane("top")
    );
}

/// Waits for `poked top` to end, and returns its exit status.
fn wait_for_exit(tmux: &Tmux, env: &Env) -> i32 {
    let read = || {
        std::fs::read_to_string(status_file(env))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    assert!(
        wait_for(PATIENCE, || read().is_some()),
        "top did not exit:\n{}",
        tmux.pane("top")
    );
    read().unwrap()
}

fn paused(env: &Env, id: &str) -> i64 {
    env.count(&format!("SELECT paused FROM agents WHERE id = '{id}'"))
}

#[test]
fn p_pauses_the_selected_agent_a_commit_shows_without_a_key_and_q_restores_the_terminal() {
    let env = Env::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else {
        return;
    };
    env.ok("2026-01-01T00:00:00Z", &["add", "hq-mayor", "--base", "1m"]);
    start_top(&tmux, &env, &[]);
    wait_for_screen(&tmux, "> hq-mayor");

    tmux.run(&["send-keys", "-t", "top", "p"]);
    assert!(
        wait_for(PATIENCE, || paused(&env, "hq-mayor") == 1),
        "p did not pause the agent:\n{}",
        tmux.pane("top")
    );
    wait_for_screen(&tmux, "hq-mayor: paused");

    // Another process's commit is on screen within a second (the watch polls every 150 ms;
    // the slack is for a loaded machine).
    env.ok("2026-01-01T00:00:00Z", &["add", "gt-witness"]);
    assert!(
        tmux.shows_within("top", "  gt-witness", Duration::from_secs(3)),
        "a new agent did not show:\n{}",
        tmux.pane("top")
    );

    tmux.run(&["send-keys", "-t", "top", "q"]);
    assert_eq!(wait_for_exit(&tmux, &env), 0, "{}", tmux.pane("top"));
    // The alternate screen is gone: the pane shows what was there before top, not top.
    let after = tmux.pane("top");
    assert!(
        !after.contains("hq-mayor"),
        "the terminal was not restored:\n{after}"
    );
    let alternate = tmux.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"]);
    assert_eq!(
        String::from_utf8_lossy(&alternate.stdout).trim(),
        "0",
        "top left the terminal on its alternate screen"
    );
}

#[test]
fn on_a_read_only_database_a_write_key_shows_the_error_and_the_view_goes_on() {
    let env = Env::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else {
        return;
    };
    env.ok("2026-01-01T00:00:00Z", &["add", "hq-mayor"]);
    let wrapper = read_only_for_poked(&env);
    let before = env.fingerprint();
    start_top(&tmux, &env, wrapper);
    wait_for_screen(&tmux, "(read-only)");
    tmux.run(&["send-keys", "-t", "top", "p"]);
    wait_for_screen(&tmux, "poked: database");
    let pane = tmux.pane("top");
    let status = pane.lines().find(|l| l.starts_with("poked: database")).unwrap();
    assert!(status.contains("is read-only"), "{pane}");
    tmux.run(&["send-keys", "-t", "top", "j", "a", "Escape"]);
    assert_eq!(wait_for_exit(&tmux, &env), 0, "{}", tmux.pane("top"));
    assert!(env.fingerprint() == before, "a read-only database was changed");
}

#[test]
fn without_a_terminal_top_says_so_and_exits_2_creating_nothing() {
    let env = Env::new();
    let out = output_within(poked(&env.db).arg("top"), PROMPT);
    assert_error(&out, 2, "top needs a terminal");
    assert!(!env.db.exists(), "top created a database");
}
