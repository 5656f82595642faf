//! How `top` looks: a summary line, the agents in due order, the newest log rows, the status
//! line and the keys; `enter` lays the agent's `show` text over them.
//!
//! Drawing reads nothing but the [`App`] and the time, except the caps of the rows on screen
//! (read once, see [`App::show_rows`]). Only the rows on screen are built; the summary's counts
//! are the one pass over all agents a redraw makes. Without colour (`NO_COLOR`), only bold and reverse
//! video remain.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState};

use super::app::App;
use crate::commands::output::{LOG_HEADER, LOG_RIGHT, countdown, log_cells, plural, whole_seconds};
use crate::commands::view::Shown;
use poked::agent::{Agent, Freshness, State, StateCounts};
use poked::clock::Millis;
use poked::log::{LogRow, Outcome};
use poked::rules;
use poked::units::{format_duration, format_time};

/// What a frame is drawn with besides the app: the time, and whether colour is allowed.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub now: Millis,
    pub colour: bool,
}

impl View {
    /// A style with this foreground colour, or none without colour.
    fn fg(self, colour: Color) -> Style {
        if self.colour {
            Style::new().fg(colour)
        } else {
            Style::new()
        }
    }
}

/// The columns of the agents table; the numbers (interval, misses, cap) right-aligned.
pub(super) const AGENT_HEADER: [&str; 9] = [
    "ID",
    "STATE",
    "NEXT DUE",
    "FRESHNESS",
    "INTERVAL",
    "MISSES",
    "HOLD",
    "RUNG",
    "CAP",
];
const AGENT_RIGHT: [usize; 3] = [4, 5, 8];
/// The agents table's columns, most wanted first: the last ones make way on a narrow terminal.
const AGENT_WANTED: [usize; 9] = [0, 1, 2, 5, 4, 6, 3, 7, 8];

/// The log table's columns, most wanted first (see [`AGENT_WANTED`]).
const LOG_WANTED: [usize; 9] = [0, 1, 2, 5, 4, 3, 7, 6, DETAIL];
/// The log table's detail column, which takes what is left of the line.
const DETAIL: usize = 8;
/// The least room left for the detail for it to be drawn at all.
const DETAIL_LEAST: usize = 8;

/// Blank columns between two columns of a table.
const COLUMN_SPACING: usize = 2;

/// The widest an id column grows before ids are cut.
const ID_WIDTH: usize = 32;

/// Draws the whole screen.
pub fn render(frame: &mut Frame, app: &mut App, view: View) {
    let area = frame.area();
    let log_height = log_height(area.height, app.log.len());
    let [summary, agents, log, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(log_height),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    app.show_rows(usize::from(agents.height.saturating_sub(1)), view.now);
    frame.render_widget(summary_line(app, view), summary);
    draw_agents(frame, agents, app, view);
    draw_log(frame, log, &app.log, view);
    let status_style = if app.status.error {
        view.fg(Color::Red)
    } else {
        Style::new()
    };
    frame.render_widget(Line::styled(app.status.text.as_str(), status_style), status);
    frame.render_widget(
        Line::styled(
            "↑↓/jk select  p pause/resume  r reset  a activity  enter details  q quit",
            Style::new().add_modifier(Modifier::DIM),
        ),
        keys,
    );
    if let Some(shown) = &app.details {
        let popup = area.centered(Constraint::Percentage(90), Constraint::Percentage(80));
        let text = details_text(shown, usize::from(popup.height.saturating_sub(2)), view.now);
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(text)
                .block(Block::bordered().title(format!(" {} (enter or esc closes) ", shown.agent.id))),
            popup,
        );
    }
}

/// The agent's details as `show` prints them, in `height` lines when the log allows: the pane
/// cuts what does not fit at the bottom, where the newest log rows are, so the oldest rows make
/// way (one row always stays).
fn details_text(shown: &Shown, height: usize, now: Millis) -> String {
    let print = |shown: &Shown| {
        let mut text = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = shown.print(&mut text, now);
        String::from_utf8_lossy(&text).into_owned()
    };
    let text = print(shown);
    let over = text.lines().count().saturating_sub(height);
    let dropped = over.min(shown.log.len().saturating_sub(1));
    if dropped == 0 {
        return text;
    }
    let mut fitted = shown.clone();
    fitted.log.drain(..dropped);
    print(&fitted)
}

/// The log pane's height: its title, header and rows, up to two fifths of the screen.
fn log_height(screen: u16, rows: usize) -> u16 {
    let most = (screen.saturating_sub(3) * 2 / 5).max(3);
    u16::try_from(rows.saturating_add(2))
        .unwrap_or(u16::MAX)
        .clamp(3, most)
}

/// `poked top  <now>  5 agents: 1 due, 1 backing off, 2 waiting, 1 paused  /path/poked.db` (the
/// path after `(read-only) ` when it is): the path last, where a narrow terminal cuts it.
fn summary_line(app: &App, view: View) -> Line<'static> {
    let c = StateCounts::of(&app.agents, view.now);
    let states: Vec<String> = [
        (c.due, State::Due),
        (c.backing_off, State::BackingOff),
        (c.waiting, State::Waiting),
        (c.paused, State::Paused),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, s)| format!("{n} {}", s.as_str()))
    .collect();
    let read_only = if app.store().is_read_only() {
        "(read-only) "
    } else {
        ""
    };
    let agents = plural(app.agents.len() as u64, "agent", "agents");
    let counts = if states.is_empty() {
        agents
    } else {
        format!("{agents}: {}", states.join(", "))
    };
    Line::from(vec![
        Span::styled("poked top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  {counts}  {read_only}{}",
            // To the second: the view ticks once a second.
            format_time(view.now - view.now.rem_euclid(1000)),
            app.store().path().display(),
        )),
    ])
}

fn draw_agents(frame: &mut Frame, area: Rect, app: &App, view: View) {
    if app.agents.is_empty() {
        let hint = "no agents yet (add one with `poked add ID -- COMMAND...`)";
        frame.render_widget(Paragraph::new(hint), area);
        return;
    }
    let rows = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + rows).min(app.agents.len());
    let cells: Vec<Vec<(String, Style)>> = app.agents[app.offset..end]
        .iter()
        .map(|agent| agent_cells(app, agent, view))
        .collect();
    let mut widths = column_widths(
        &AGENT_HEADER,
        cells.iter().map(|r| r.iter().map(|(t, _)| t.as_str())),
    );
    widths[0] = widths[0].min(ID_WIDTH);
    // The selection marker takes two columns.
    let width = usize::from(area.width).saturating_sub(2);
    let shown = fitting(&widths, width, &AGENT_WANTED);
    let table = Table::new(
        cells.into_iter().map(|row| styled_row(row, &shown, &AGENT_RIGHT)),
        shown.iter().map(|&i| Constraint::Length(as_u16(widths[i]))),
    )
    .header(header_row(&AGENT_HEADER, &shown, &AGENT_RIGHT))
    .column_spacing(as_u16(COLUMN_SPACING))
    .highlight_symbol("> ")
    .highlight_spacing(HighlightSpacing::Always)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(app.selected.saturating_sub(app.offset)));
    frame.render_stateful_widget(table, area, &mut state);
}

/// One agent's cells, each with its style.
fn agent_cells(app: &App, agent: &Agent, view: View) -> Vec<(String, Style)> {
    let now = view.now;
    let state = agent.state(now);
    let state_style = view.fg(match state {
        State::Due => Color::Yellow,
        State::BackingOff => Color::Magenta,
        State::Waiting => Color::Green,
        State::Paused => Color::DarkGray,
    });
    let freshness = agent.freshness(now);
    let fresh_style = view.fg(match freshness {
        Freshness::Fresh => Color::Green,
        Freshness::Stale => Color::Yellow,
        Freshness::VeryStale => Color::Red,
    });
    let due = agent
        .next_due_at
        .map_or_else(|| "-".to_string(), |at| countdown(at, now));
    let hold = match agent.held_until_at {
        Some(until) if agent.held(now) => format!("held {}", format_duration(whole_seconds(until - now))),
        _ => String::new(),
    };
    let rungs = app.rungs(&agent.id);
    let misses = agent.consecutive_misses;
    let rung = rules::next_rung(rungs, misses)
        .map_or_else(String::new, |r| format!("r{} in {}", r.misses, r.misses - misses));
    let cap = match app.cap(&agent.id) {
        Some(cap) if !rungs.is_empty() => format!("{}/{}", cap.count(now), cap.limit),
        _ => String::new(),
    };
    let plain = Style::new();
    vec![
        (agent.id.to_string(), plain),
        (state.as_str().to_string(), state_style),
        (due, plain),
        (freshness.as_str().to_string(), fresh_style),
        (format_duration(agent.current_interval_ms), plain),
        (misses.to_string(), plain),
        (hold, view.fg(Color::Cyan)),
        (rung, plain),
        (cap, plain),
    ]
}

/// The newest log rows that fit, newest last, with their outcomes coloured.
fn draw_log(frame: &mut Frame, area: Rect, log: &[LogRow], view: View) {
    let block = Block::new().borders(Borders::TOP).title(" log, newest last ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if log.is_empty() {
        frame.render_widget(Paragraph::new("no log rows"), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let shown = &log[log.len().saturating_sub(rows)..];
    let cells: Vec<Vec<(String, Style)>> = shown
        .iter()
        .map(|r| {
            let outcome = view.fg(outcome_colour(r.outcome));
            log_cells(r)
                .into_iter()
                .enumerate()
                .map(|(i, text)| (text, if i == 5 { outcome } else { Style::new() }))
                .collect()
        })
        .collect();
    let mut widths = column_widths(
        &LOG_HEADER,
        cells.iter().map(|r| r.iter().map(|(t, _)| t.as_str())),
    );
    // The detail takes what is left, cut at the edge (drawn when a few columns are left for it);
    // the columns before it keep their widths.
    widths[DETAIL] = widths[DETAIL].min(DETAIL_LEAST);
    let shown = fitting(&widths, usize::from(inner.width), &LOG_WANTED);
    let constraints = shown.iter().map(|&i| match i {
        DETAIL => Constraint::Fill(1),
        _ => Constraint::Length(as_u16(widths[i])),
    });
    let table = Table::new(
        cells.into_iter().map(|row| styled_row(row, &shown, &LOG_RIGHT)),
        constraints,
    )
    .header(header_row(&LOG_HEADER, &shown, &LOG_RIGHT))
    .column_spacing(as_u16(COLUMN_SPACING));
    frame.render_widget(table, inner);
}

fn outcome_colour(outcome: Option<Outcome>) -> Color {
    match outcome {
        Some(Outcome::Pending) => Color::Yellow,
        Some(Outcome::Ok | Outcome::Sent) => Color::Green,
        Some(Outcome::Held) => Color::Magenta,
        Some(Outcome::Failed | Outcome::Timeout | Outcome::Error | Outcome::Interrupted) => Color::Red,
        None => Color::Reset,
    }
}

/// Each column as wide as its header or its widest cell.
fn column_widths<'a>(
    header: &[&str],
    rows: impl Iterator<Item = impl Iterator<Item = &'a str>>,
) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// The columns to draw in `width` terminal columns: taken in `wanted` order (most wanted
/// first) while they fit whole, then put back in their order. A narrow terminal (a split tmux
/// pane) leaves out the least wanted columns rather than cutting every one of them; the first
/// wanted column is drawn even when it does not fit.
fn fitting(widths: &[usize], width: usize, wanted: &[usize]) -> Vec<usize> {
    let mut shown = Vec::new();
    let mut used = 0;
    for &i in wanted {
        let needed = widths[i] + if shown.is_empty() { 0 } else { COLUMN_SPACING };
        if !shown.is_empty() && used + needed > width {
            break;
        }
        used += needed;
        shown.push(i);
    }
    shown.sort_unstable();
    shown
}

fn header_row(header: &[&'static str], shown: &[usize], right: &[usize]) -> Row<'static> {
    let cells = header.iter().map(|h| (h.to_string(), Style::new())).collect();
    styled_row(cells, shown, right).style(Style::new().add_modifier(Modifier::BOLD))
}

/// The `shown` cells of a row, those at `right` right-aligned.
fn styled_row(cells: Vec<(String, Style)>, shown: &[usize], right: &[usize]) -> Row<'static> {
    let cells = cells.into_iter().enumerate().filter(|(i, _)| shown.contains(i));
    Row::new(cells.map(|(i, (text, style))| {
        let line = Line::styled(text, style);
        Cell::from(if right.contains(&i) {
            line.right_aligned()
        } else {
            line
        })
    }))
}

fn as_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}
