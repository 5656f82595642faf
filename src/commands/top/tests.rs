//! `top` drawn into ratatui's `TestBackend`: a known database at a fixed time, the screen
//! compared as text, and the keys' writes read back from the store.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};

use super::app::App;
use super::draw::{AGENT_HEADER, View, render};
use crate::commands::output::LOG_HEADER;
use poked::agent::{AgentId, Rung, Settings};
use poked::clock::Millis;
use poked::random::FixedDraw;
use poked::rules::{Action, Decision};
use poked::store::{Finished, OpenOptions, Store};
use poked::units::parse_rfc3339;

const MINUTE: Millis = 60_000;

fn t0() -> Millis {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

fn id(text: &str) -> AgentId {
    AgentId::parse(text).unwrap()
}

fn rung(misses: i64, command: &str) -> Rung {
    Rung {
        misses,
        command: vec![command.into()],
    }
}

/// Four agents at 00:05, one of each state:
/// - `idle`, never poked, so due since it was added at 00:00;
/// - `worker`, poked at 00:01 (`ok`), active at 00:04: fresh, due at 00:09;
/// - `stuck`, base 1m, ladder 3 and 5: two misses by hand, then at 00:03 the pass's third
///   miss fires rung 3 (still pending), which holds it until 00:08;
/// - `resting`, added paused.
fn fixture(dir: &std::path::Path) -> Store {
    let store = Store::open(
        &dir.join("poked.db"),
        OpenOptions {
            create: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let (t0, draw) = (t0(), FixedDraw(0.0));
    let true_cmd = Some(vec!["true".to_string()]);
    store
        .add(&id("idle"), &Settings::default(), &[], false, t0, &draw)
        .unwrap();
    let worker = Settings {
        command: true_cmd.clone(),
        ..Settings::default()
    };
    store.add(&id("worker"), &worker, &[], false, t0, &draw).unwrap();
    let stuck = Settings {
        command: true_cmd,
        base_interval_ms: MINUTE,
        ..Settings::default()
    };
    let ladder = [rung(3, "restart"), rung(5, "page-me")];
    store
        .add(&id("stuck"), &stuck, &ladder, false, t0, &draw)
        .unwrap();
    store
        .add(&id("resting"), &Settings::default(), &[], true, t0, &draw)
        .unwrap();
    let pass = |name: &str, action: Action, miss: bool, at: Millis| {
        store
            .write(|tx| {
                let mut agent = tx.agent(&id(name))?;
                tx.begin(&mut agent, &Decision { miss, action }, at, &draw, None)
            })
            .unwrap()
    };
    let poke = pass("worker", Action::Poke, false, t0 + MINUTE);
    store
        .finish_commands(&[Finished {
            log_id: poke.log_id,
            outcome: poked::log::Outcome::Ok,
            exit_code: Some(0),
            duration_ms: 12,
            detail: None,
        }])
        .unwrap();
    store.record_miss(&id("stuck"), t0 + MINUTE, &draw).unwrap();
    store.record_miss(&id("stuck"), t0 + 2 * MINUTE, &draw).unwrap();
    pass(
        "stuck",
        Action::Escalate(ladder[0].clone()),
        true,
        t0 + 3 * MINUTE,
    );
    store
        .record_activity(&id("worker"), t0 + 4 * MINUTE, t0 + 4 * MINUTE, &draw)
        .unwrap();
    store
}

/// Draws `app` on a 120×26 terminal at `now`; returns the screen's lines with their trailing
/// blanks trimmed, the temporary database path written `<db>`, and the buffer.
fn screen(app: &mut App, now: Millis, colour: bool) -> (String, ratatui::buffer::Buffer) {
    screen_sized(app, now, colour, 120, 26)
}

/// [`screen`] on a terminal `width` columns wide and `height` lines tall.
fn screen_sized(
    app: &mut App,
    now: Millis,
    colour: bool,
    width: u16,
    height: u16,
) -> (String, ratatui::buffer::Buffer) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| render(frame, app, View { now, colour }))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let width = usize::from(buffer.area.width);
    let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    let text: Vec<String> = symbols
        .chunks(width)
        .map(|line| line.concat().trim_end().to_string())
        .collect();
    let db = app.store().path().display().to_string();
    (text.join("\n").replace(&db, "<db>"), buffer)
}

fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts {start:?}:\n{text}"))
}

#[test]
fn agents_come_in_due_order_with_countdowns_holds_rungs_and_caps_and_the_log_beneath() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = App::new(fixture(dir.path()), now).unwrap();
    let (text, _) = screen(&mut app, now, false);
    let expected = r"
poked top  2026-01-01T00:05:00Z  4 agents: 1 due, 1 backing off, 1 waiting, 1 paused  <db>
  ID       STATE        NEXT DUE       FRESHNESS   INTERVAL  MISSES  HOLD     RUNG     CAP
> idle     due          overdue by 5m  very stale        5m       0
  stuck    backing off  in 3m          very stale   3m22.5s       3  held 3m  r5 in 2  1/3
  worker   waiting      in 4m          fresh             5m       0
  resting  paused       -              very stale        5m       0









 log, newest last ──────────────────────────────────────────────────────────────────────────────────────────────────────
TIME                  AGENT    KIND        INTERVAL  MISSES  OUTCOME  EXIT  DURATION  DETAIL
2026-01-01T00:00:00Z  resting  added             5m       0                           geometric 5m..30m ×1.5, paused
2026-01-01T00:01:00Z  worker   poke              5m       0  ok          0      12ms
2026-01-01T00:01:00Z  stuck    miss           1m30s       1
2026-01-01T00:02:00Z  stuck    miss           2m15s       2
2026-01-01T00:03:00Z  stuck    miss         3m22.5s       3
2026-01-01T00:03:00Z  stuck    escalation   3m22.5s       3  pending                  rung 3
2026-01-01T00:04:00Z  worker   activity          5m       0

↑↓/jk select  p pause/resume  r reset  a activity  enter details  q quit";
    assert_eq!(text, expected.trim_start_matches('\n'), "\n{text}");
}

#[test]
fn countdowns_tick_from_memory_and_a_reload_shows_a_pending_escalation_turn_into_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = App::new(fixture(dir.path()), now).unwrap();
    // A tick: nothing read, the countdowns and the hold move on by a second.
    let (text, _) = screen(&mut app, now + 1000, false);
    assert!(line_of(&text, "> idle ").contains("overdue by 5m1s"), "{text}");
    let stuck = line_of(&text, "  stuck ");
    assert!(
        stuck.contains("in 2m59s") && stuck.contains("held 2m59s"),
        "{text}"
    );
    // Half a second before it is due, a countdown still says a whole second.
    let (text, _) = screen(&mut app, t0() + 9 * MINUTE - 500, false);
    assert!(line_of(&text, "  worker ").contains("in 1s"), "{text}");

    let pending: i64 = app
        .log
        .iter()
        .find(|r| r.kind == poked::log::Kind::Escalation)
        .unwrap()
        .id;
    app.store()
        .finish_commands(&[Finished {
            log_id: pending,
            outcome: poked::log::Outcome::Failed,
            exit_code: Some(3),
            duration_ms: 40,
            detail: None,
        }])
        .unwrap();
    let (text, _) = screen(&mut app, now, false);
    assert!(line_of(&text, "2026-01-01T00:03:00Z  stuck    escalation").contains("pending"));
    app.reload(now).unwrap();
    let (text, _) = screen(&mut app, now, false);
    let row = line_of(&text, "2026-01-01T00:03:00Z  stuck    escalation");
    assert!(row.contains("failed      3      40ms  rung 3"), "{text}");
}

#[test]
fn keys_write_through_the_store_and_the_selection_follows_its_agent() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = App::new(fixture(dir.path()), now).unwrap();
    let draw = FixedDraw(0.0);
    app.move_by(1);
    app.toggle_pause(now);
    app.reload(now).unwrap();
    assert!(app.store().agent(&id("stuck")).unwrap().paused);
    let (text, _) = screen(&mut app, now, false);
    assert!(line_of(&text, "> stuck ").contains("paused"), "{text}");
    assert_eq!(
        app.agents.last().unwrap().id,
        id("stuck"),
        "paused agents come last"
    );
    assert!(text.contains("\nstuck: paused\n"), "{text}");

    app.toggle_pause(now);
    app.reset(now, &draw);
    app.reload(now).unwrap();
    let stuck = app.store().agent(&id("stuck")).unwrap();
    assert!(!stuck.paused && stuck.consecutive_misses == 0 && stuck.held_until_at.is_none());
    let (text, _) = screen(&mut app, now, false);
    assert!(
        text.contains("\nstuck: reset recorded; interval 1m, 0 misses, due now\n"),
        "{text}"
    );
    // A reset clears the cap; the next rung is three misses away again.
    assert!(line_of(&text, "> stuck ").ends_with("r3 in 3  0/3"), "{text}");

    app.select(usize::MAX);
    app.activity(now, &draw);
    assert_eq!(
        app.store().agent(&id("resting")).unwrap().last_activity_at,
        Some(now)
    );
    assert!(
        app.status.text.starts_with("resting: activity recorded"),
        "{:?}",
        app.status
    );
}

/// The fixture's view at `now` with `stuck` (the second row) selected and its details open.
fn stuck_details_open(dir: &std::path::Path, now: Millis) -> App {
    let mut app = App::new(fixture(dir), now).unwrap();
    app.move_by(1);
    app.toggle_details(now);
    app
}

#[test]
fn enter_lays_the_agents_show_text_over_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = stuck_details_open(dir.path(), now);
    let (text, _) = screen(&mut app, now, false);
    assert!(text.contains("┌ stuck (enter or esc closes) ─"), "{text}");
    for field in [
        "│id                  stuck ",
        "│held until          2026-01-01T00:08:00Z (in 3m) ",
        "│ladder              3: [\"restart\"] (this streak: 2026-01-01T00:03:00Z, pending); 5: [\"page-me\"] ",
    ] {
        assert!(text.contains(field), "{field:?} is missing:\n{text}");
    }
    app.toggle_details(now);
    let (text, _) = screen(&mut app, now, false);
    assert!(!text.contains("held until"), "{text}");
}

#[test]
fn details_too_long_for_the_pane_keep_the_newest_log_rows() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = stuck_details_open(dir.path(), now);
    // 24 lines of pane: `stuck`'s 16 fields, a blank line, the log's header and 4 of its 5 rows.
    let (text, _) = screen_sized(&mut app, now, false, 120, 30);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("│2026-01-01T")).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows[3].contains(" escalation ") && rows[3].contains("pending"),
        "{text}"
    );
    assert!(
        !text.contains(" added "),
        "the oldest row should have made way:\n{text}"
    );
    // Where everything fits, nothing is left out.
    let (text, _) = screen_sized(&mut app, now, false, 120, 40);
    assert!(text.contains(" added "), "{text}");
}

#[test]
fn a_narrow_terminal_leaves_out_whole_columns_instead_of_cutting_them() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = App::new(fixture(dir.path()), now).unwrap();
    let (agents, log) = (AGENT_HEADER, LOG_HEADER);
    let headings = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect()
    };
    for width in [40, 60, 80, 120] {
        let (text, _) = screen_sized(&mut app, now, false, width, 26);
        let agent_header = headings(line_of(&text, "  ID "));
        let log_header = headings(line_of(&text, "TIME "));
        for (shown, all) in [(&agent_header, &agents[..]), (&log_header, &log[..])] {
            // Every heading whole, in order, and the first ones always there.
            let mut at = 0;
            for heading in shown {
                let found = all[at..].iter().position(|h| h == heading);
                assert!(found.is_some(), "{heading:?} cut at width {width}:\n{text}");
                at += found.unwrap() + 1;
            }
            assert!(shown.len() >= 2, "at width {width}:\n{text}");
            assert_eq!(shown[0], all[0], "at width {width}:\n{text}");
        }
        assert!(agent_header.iter().any(|h| h == "NEXT DUE"), "{text}");
        assert!(log_header.iter().any(|h| h == "OUTCOME") || width < 60, "{text}");
        if width == 120 {
            assert_eq!(agent_header, agents, "{text}");
            assert_eq!(log_header, log, "{text}");
        }
    }
}

#[test]
fn without_colour_only_bold_and_reverse_remain() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + 5 * MINUTE;
    let mut app = App::new(fixture(dir.path()), now).unwrap();
    let coloured = |colour: bool, app: &mut App| {
        let (_, buffer) = screen(app, now, colour);
        buffer
            .content
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert!(coloured(true, &mut app) > 0, "the colour view has no colour");
    assert_eq!(coloured(false, &mut app), 0);
    // What stays: the selected row in reverse video, the headers in bold.
    let (_, buffer) = screen(&mut app, now, false);
    for (modifier, what) in [(Modifier::REVERSED, "reverse"), (Modifier::BOLD, "bold")] {
        assert!(
            buffer.content.iter().any(|c| c.modifier.contains(modifier)),
            "no {what} cell without colour"
        );
    }
}
