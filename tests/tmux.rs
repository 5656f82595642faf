//! `--tmux` against a real tmux server (SPEC §7.4): a private server per test, on a socket in
//! the test's temporary folder (`TMUX_TMPDIR`), killed when the test ends. Without tmux the
//! tests say so and pass, except under CI (`CI` set), where a missing tool is a failure.

use std::time::Duration;

use crate::common::{Env, Tmux, argv, wait_for};

fn now_ms() -> i64 {
    poked::clock::Clock::now(&poked::clock::SystemClock)
}

/// Waits until the wall clock has passed `at` (milliseconds): the echo window is real time.
fn wait_past(at: i64) {
    assert!(wait_for(Duration::from_secs(10), || now_ms() > at));
}

#[test]
fn the_poke_types_into_the_pane_its_echo_is_no_answer_and_later_output_is() {
    let env = Env::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else {
        return;
    };
    let out = env.dir.path().join("out");
    std::fs::write(&out, "").unwrap();
    tmux.run(&argv(
        "new-session -d -s w -x 120 -y 20 tail -f",
        &[out.to_str().unwrap()],
    ));
    let words = "add w --tmux w --base 1s --fresh 0s --very-stale 0s --message";
    tmux.poked(&env, &argv(words, &["wake up, w"]));
    // The probe's first value is the session's creation: new, so it counts once.
    tmux.poked(&env, &["run", "--once"]);
    assert!(
        tmux.shows_within("w", "wake up, w", Duration::from_secs(10)),
        "the poke's text did not arrive: {}",
        tmux.pane("w")
    );
    let activities = || env.count("SELECT count(*) FROM poke_log WHERE kind = 'activity'");
    let before = activities();
    let poke: i64 = env.value("SELECT last_poke_at FROM agents");
    // The typing shows as window activity within the echo window: seen, not an answer.
    wait_past(poke + 1000);
    tmux.poked(&env, &["run", "--once"]);
    assert_eq!(activities(), before, "the poke's own echo counted as an answer");
    let seen: i64 = env.value("SELECT probe_seen_at FROM agents");
    assert!(
        seen >= poke / 1000 * 1000 && seen <= poke + 2000,
        "seen {seen}, poke {poke}"
    );
    // Output well after the last poke's echo window is the agent answering.
    let poke: i64 = env.value("SELECT last_poke_at FROM agents");
    wait_past(poke + 3000);
    std::fs::write(&out, "agent: working on it\n").unwrap();
    assert!(tmux.shows_within("w", "working on it", Duration::from_secs(10)));
    tmux.poked(&env, &["run", "--once"]);
    assert_eq!(
        activities(),
        before + 1,
        "output after the echo window was not seen as activity"
    );
    let misses: i64 = env.value("SELECT consecutive_misses FROM agents");
    assert_eq!(misses, 0);
}

#[test]
fn a_rung_that_restarts_the_session_brings_the_agent_back() {
    let env = Env::new();
    let Some(tmux) = Tmux::start(env.dir.path()) else {
        return;
    };
    tmux.run(&["new-session", "-d", "-s", "w", "cat"]);
    // The rung kills the session and starts a new one whose agent speaks after a moment.
    let restart = env.dir.path().join("restart.sh");
    std::fs::write(
        &restart,
        "tmux kill-session -t w\nexec tmux new-session -d -s w sh -c 'sleep 3; echo back after restart; exec cat'\n",
    )
    .unwrap();
    let rung = format!("1:sh {}", restart.display());
    let words = "add w --tmux w --base 1s --fresh 0s --very-stale 0s --grace 1s --escalate";
    tmux.poked(&env, &argv(words, &[&rung]));
    tmux.poked(&env, &["run", "--once"]);
    let poke: i64 = env.value("SELECT last_poke_at FROM agents");
    wait_past(poke + 2500);
    // Unanswered: the miss reaches rung 1, which restarts the session.
    tmux.poked(&env, &["run", "--once"]);
    assert_eq!(
        env.count("SELECT count(*) FROM poke_log WHERE kind = 'escalation' AND outcome = 'ok'"),
        1,
        "{}",
        tmux.poked(&env, &["history"])
    );
    assert!(
        tmux.shows_within("w", "back after restart", Duration::from_secs(15)),
        "the session did not come back: {}",
        tmux.pane("w")
    );
    let escalated: i64 = env.value("SELECT last_poke_at FROM agents");
    wait_past(escalated + 2500);
    tmux.poked(&env, &["run", "--once"]);
    let (misses, activity): (i64, Option<i64>) =
        env.row("SELECT consecutive_misses, last_activity_at FROM agents");
    assert!(
        activity.is_some_and(|a| a > escalated + 2000),
        "the restarted agent's output was not activity"
    );
    assert_eq!(misses, 0, "{}", tmux.poked(&env, &["history"]));
}
