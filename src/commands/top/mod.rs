//! `poked top`: a full-screen live view of the agents and the newest log rows (SPEC §8).
//!
//! The loop draws, then waits for a key, a commit or the next whole second, whichever comes
//! first ([`Poll::wait_or`], the `PRAGMA data_version` poll the daemon's readers use, with the
//! terminal's input as its step). A commit reloads the rows, at most once every [`RELOAD_GAP`]
//! (a daemon catching up commits every millisecond); a tick only redraws from memory, so an
//! idle view costs a cheap pragma every [`poked::daemon::watch::POLL_INTERVAL`] and one redraw
//! a second. Keys write through the same store methods as `poked pause`, `reset` and
//! `activity`, with the time and jitter draw of the [`Context`]; a failed write (a read-only
//! file, a busy lock) shows in the status line and the view goes on.
//!
//! The terminal is restored on every way out: the [`Screen`] guard on return and on error,
//! ratatui's panic hook on a panic, and SIGTERM or SIGINT end the loop like `q`.

mod app;
mod draw;
mod keys;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};
use ratatui::DefaultTerminal;

use super::Context;
use app::App;
use draw::View;
use keys::Action;
use poked::daemon::watch::{Poll, Woke};
use poked::error::{Error, Result};

/// `poked top`.
pub fn top(ctx: &Context) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "top needs a terminal, and stdout is not one (scripts can use `poked list --json` \
             or `poked history --follow`)"
                .into(),
        ));
    }
    let store = ctx.open_to_read()?;
    let mut poll = Poll::new(&store, true)?;
    let mut app = App::new(store, ctx.now())?;
    let colour = std::env::var_os("NO_COLOR").is_none();
    let mut screen = Screen::enter()?;
    // Commits seen but not yet read: a daemon that commits every millisecond (a catch-up) would
    // otherwise have the view re-read a large fleet back to back.
    let (mut stale, mut reloaded) = (false, Instant::now());
    while !poll.stopped() {
        if stale && reloaded.elapsed() >= RELOAD_GAP {
            reload(&mut app, ctx);
            (stale, reloaded) = (false, Instant::now());
        }
        let now = ctx.now();
        screen
            .0
            .draw(|frame| draw::render(frame, &mut app, View { now, colour }))
            .map_err(terminal_err)?;
        // Redraw when the clock reaches its next whole second, so the countdowns tick together.
        let mut wait = Duration::from_millis(u64::try_from(1000 - now.rem_euclid(1000)).unwrap_or(1000));
        if stale {
            wait = wait.min(RELOAD_GAP.saturating_sub(reloaded.elapsed()));
        }
        let woke = poll.wait_or(wait, |step| event::poll(step).map_err(terminal_err))?;
        match woke {
            Woke::Changed => stale = true,
            Woke::Elapsed => {}
            Woke::Ready => {
                // Resizes, focus and the mouse need nothing but the redraw that follows.
                let Event::Key(key) = event::read().map_err(terminal_err)? else {
                    continue;
                };
                match keys::action(key) {
                    Some(Action::Quit) => break,
                    Some(Action::Back) if app.details.is_none() => break,
                    Some(action) => act(&mut app, ctx, action),
                    None => {}
                }
            }
        }
    }
    Ok(())
}

/// The least time between two reads of the database: a commit shows within this (and the read).
const RELOAD_GAP: Duration = Duration::from_millis(500);

/// Does what a key asks (other than quitting).
fn act(app: &mut App, ctx: &Context, action: Action) {
    let now = ctx.now();
    let draw = ctx.draw.as_ref();
    let page = isize::try_from(app.page).unwrap_or(1);
    match action {
        Action::Quit => {}
        Action::Move(rows) => app.move_by(rows),
        Action::Page(pages) => app.move_by(pages.saturating_mul(page)),
        Action::First => app.select(0),
        Action::Last => app.select(usize::MAX),
        Action::Details | Action::Back => app.toggle_details(now),
        Action::TogglePause => app.toggle_pause(now),
        Action::Reset => app.reset(now, draw),
        Action::Activity => app.activity(now, draw),
    }
    if matches!(action, Action::TogglePause | Action::Reset | Action::Activity) {
        // Show the write at once; the commit's own wake reloads once more, harmlessly.
        reload(app, ctx);
    }
}

/// Reads the database again; a failed read leaves the last rows on screen and says why.
fn reload(app: &mut App, ctx: &Context) {
    if let Err(e) = app.reload(ctx.now()) {
        app.fail(&e);
    }
}

/// The terminal in raw mode on the alternate screen, restored when dropped.
struct Screen(DefaultTerminal);

impl Screen {
    fn enter() -> Result<Screen> {
        // `try_init` also installs the panic hook that restores the terminal before a panic's
        // message is printed.
        ratatui::try_init().map(Screen).map_err(|e| {
            ratatui::restore();
            terminal_err(e)
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn terminal_err(source: std::io::Error) -> Error {
    Error::Io {
        path: "<terminal>".into(),
        source,
    }
}
