//! What `top` shows and what its keys do: the agents in due order, the newest log rows, the
//! selection, the details pane and the status line, kept in memory between reads.
//!
//! [`App::reload`] reads everything again and is called only when the database changed; the
//! once-a-second redraw works from memory (countdowns, states and freshness move with `now`).
//! The caps of agents with a ladder are read lazily, for the rows on screen, and kept until the
//! next reload: a cap is one query per agent, and a thousand agents need not all be looked at.

use std::collections::HashMap;

use poked::agent::{Agent, AgentId, Rung};
use poked::clock::Millis;
use poked::error::Result;
use poked::log::LogRow;
use poked::random::Draw;
use poked::rules::Cap;
use poked::store::{HistoryFilter, Store};

use super::super::agents::summary;
use super::super::view::Shown;

/// How many log rows are read: more than a tall terminal shows beneath the agents.
const LOG_ROWS: i64 = 50;

/// The status line: what the last key did, or what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// The state of the view.
pub struct App {
    store: Store,
    /// Soonest due first, paused agents last.
    pub agents: Vec<Agent>,
    rungs: HashMap<AgentId, Vec<Rung>>,
    caps: HashMap<AgentId, Cap>,
    /// The newest log rows, oldest first.
    pub log: Vec<LogRow>,
    /// The selected row, an index into `agents`, and its agent, which the selection follows
    /// when a reload moves it.
    pub selected: usize,
    selected_id: Option<AgentId>,
    /// The first agent row on screen, and how many fit.
    pub offset: usize,
    pub page: usize,
    /// The agent whose details are open, as `show` would print them.
    pub details: Option<Shown>,
    pub status: Status,
}

impl App {
    /// Reads the database for the first time.
    pub fn new(store: Store, now: Millis) -> Result<App> {
        let mut app = App {
            store,
            agents: Vec::new(),
            rungs: HashMap::new(),
            caps: HashMap::new(),
            log: Vec::new(),
            selected: 0,
            selected_id: None,
            offset: 0,
            page: 1,
            details: None,
            status: Status::default(),
        };
        app.reload(now)?;
        Ok(app)
    }

    /// The store the view reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the agents, their rungs and the newest log rows again (after a commit); the
    /// selection stays on its agent.
    pub fn reload(&mut self, now: Millis) -> Result<()> {
        let mut agents = self.store.agents()?;
        agents.sort_by(|a, b| {
            (a.next_due_at.is_none(), a.next_due_at, &a.id).cmp(&(
                b.next_due_at.is_none(),
                b.next_due_at,
                &b.id,
            ))
        });
        self.agents = agents;
        self.rungs = self.store.all_rungs()?;
        self.caps.clear();
        self.log = self.store.history(&HistoryFilter {
            limit: Some(LOG_ROWS),
            ..HistoryFilter::default()
        })?;
        let found = self
            .selected_id
            .as_ref()
            .and_then(|id| self.agents.iter().position(|a| &a.id == id));
        self.select(found.unwrap_or(self.selected));
        if let Some(open) = &self.details {
            let id = open.agent.id.clone();
            self.details = match Shown::read(&self.store, &id, now) {
                Ok(shown) => Some(shown),
                Err(e) => {
                    self.fail(&e);
                    None
                }
            };
        }
        Ok(())
    }

    /// Selects row `index` (clamped to the rows there are).
    pub fn select(&mut self, index: usize) {
        self.selected = index.min(self.agents.len().saturating_sub(1));
        self.selected_id = self.agents.get(self.selected).map(|a| a.id.clone());
    }

    /// Moves the selection by `delta` rows.
    pub fn move_by(&mut self, delta: isize) {
        self.select(self.selected.saturating_add_signed(delta));
    }

    /// The selected agent, if there are any.
    pub fn current(&self) -> Option<&Agent> {
        self.agents.get(self.selected)
    }

    /// Scrolls so the selection is among the `rows` rows on screen, then reads the caps of the
    /// agents with a ladder among them.
    pub fn show_rows(&mut self, rows: usize, now: Millis) {
        let rows = rows.max(1);
        self.page = rows;
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + rows {
            self.offset = self.selected + 1 - rows;
        }
        self.offset = self.offset.min(self.agents.len().saturating_sub(rows));
        let end = (self.offset + rows).min(self.agents.len());
        for i in self.offset..end {
            let agent = &self.agents[i];
            if !self.rungs.contains_key(&agent.id) || self.caps.contains_key(&agent.id) {
                continue;
            }
            match self.store.cap(agent, now) {
                Ok(cap) => {
                    self.caps.insert(agent.id.clone(), cap);
                }
                Err(e) => self.fail(&e),
            }
        }
    }

    /// The agent's rungs (none without a ladder).
    pub fn rungs(&self, id: &AgentId) -> &[Rung] {
        self.rungs.get(id).map_or(&[], Vec::as_slice)
    }

    /// The agent's cap, once [`App::show_rows`] has read it.
    pub fn cap(&self, id: &AgentId) -> Option<&Cap> {
        self.caps.get(id)
    }

    /// Opens the selected agent's details, or closes them.
    pub fn toggle_details(&mut self, now: Millis) {
        if self.details.take().is_some() {
            return;
        }
        let Some(id) = self.current().map(|a| a.id.clone()) else {
            return;
        };
        match Shown::read(&self.store, &id, now) {
            Ok(shown) => self.details = Some(shown),
            Err(e) => self.fail(&e),
        }
    }

    /// `p`: pauses the selected agent, or resumes it.
    pub fn toggle_pause(&mut self, now: Millis) {
        let Some(agent) = self.current() else { return };
        let (id, pause) = (agent.id.clone(), !agent.paused);
        match self.store.set_paused(&id, pause, now) {
            Ok(_) => self.say(format!("{id}: {}", if pause { "paused" } else { "resumed" })),
            Err(e) => self.fail(&e),
        }
    }

    /// `r`: records a reset of the selected agent.
    pub fn reset(&mut self, now: Millis, draw: &dyn Draw) {
        self.record("reset", now, |store, id| store.record_reset(id, now, draw));
    }

    /// `a`: records activity of the selected agent, now.
    pub fn activity(&mut self, now: Millis, draw: &dyn Draw) {
        self.record("activity", now, |store, id| {
            store.record_activity(id, now, now, draw)
        });
    }

    fn record(&mut self, word: &str, now: Millis, write: impl FnOnce(&Store, &AgentId) -> Result<Agent>) {
        let Some(id) = self.current().map(|a| a.id.clone()) else {
            return;
        };
        match write(&self.store, &id) {
            Ok(agent) => self.say(format!("{id}: {word} recorded; {}", summary(&agent, now))),
            Err(e) => self.fail(&e),
        }
    }

    fn say(&mut self, text: String) {
        self.status = Status { text, error: false };
    }

    /// Shows an error in the status line: the view goes on with what it has.
    pub fn fail(&mut self, e: &poked::Error) {
        self.status = Status {
            text: format!("poked: {e}"),
            error: true,
        };
    }
}
