//! poked as a library: the original in-memory Go `BackoffManager` (`GetOrCreate`,
//! `ShouldPoke`, `RecordPoke`, `RecordMiss`, `RecordActivity`, `GetInterval`, `Stats`) done with
//! poked's store, so the backoff survives a restart of the program that embeds it.
//!
//! `cargo run --example embed -- /tmp/embed.db` twice: the second run continues the first's
//! backoff instead of starting every agent from scratch.

use std::collections::BTreeMap;
use std::path::PathBuf;

use poked::agent::{AgentId, Settings};
use poked::clock::{Clock, SystemClock};
use poked::random::SystemDraw;
use poked::store::{OpenOptions, Store};
use poked::{Error, Result};

/// The seed's `BackoffManager`, with its state in a SQLite file instead of a map.
struct BackoffManager {
    store: Store,
    settings: Settings,
    clock: SystemClock,
    draw: SystemDraw,
}

impl BackoffManager {
    fn open(path: &std::path::Path, settings: Settings) -> Result<BackoffManager> {
        let options = OpenOptions {
            create: true,
            ..OpenOptions::default()
        };
        Ok(BackoffManager {
            store: Store::open(path, options)?,
            settings,
            clock: SystemClock,
            draw: SystemDraw::default(),
        })
    }

    /// `GetOrCreate`: the agent's state, registering it with the manager's settings if new.
    fn get_or_create(&self, id: &AgentId) -> Result<poked::agent::Agent> {
        match self.store.agent(id) {
            Err(Error::UnknownAgent(_)) => {
                self.store
                    .add(id, &self.settings, &[], false, self.clock.now(), &self.draw)
            }
            other => other,
        }
    }

    /// `ShouldPoke`: whether the agent is due (never poked, or a whole interval has passed).
    fn should_poke(&self, id: &AgentId) -> Result<bool> {
        let agent = self.get_or_create(id)?;
        Ok(agent.next_due_at.is_some_and(|due| due <= self.clock.now()))
    }

    /// `RecordPoke`.
    fn record_poke(&self, id: &AgentId) -> Result<()> {
        self.get_or_create(id)?;
        self.store.record_poke(id, self.clock.now(), &self.draw).map(drop)
    }

    /// `RecordMiss`: the interval grows by the strategy, up to max.
    fn record_miss(&self, id: &AgentId) -> Result<()> {
        self.get_or_create(id)?;
        self.store.record_miss(id, self.clock.now(), &self.draw).map(drop)
    }

    /// `RecordActivity`: back to the base interval.
    fn record_activity(&self, id: &AgentId) -> Result<()> {
        self.get_or_create(id)?;
        let now = self.clock.now();
        self.store.record_activity(id, now, now, &self.draw).map(drop)
    }

    /// `GetInterval`, in milliseconds.
    fn get_interval(&self, id: &AgentId) -> Result<i64> {
        Ok(self.get_or_create(id)?.current_interval_ms)
    }

    /// `Stats`: every agent's current interval.
    fn stats(&self) -> Result<BTreeMap<String, i64>> {
        Ok(self
            .store
            .agents()?
            .into_iter()
            .map(|a| (a.id.to_string(), a.current_interval_ms))
            .collect())
    }
}

fn main() -> Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| std::env::temp_dir().join("poked-embed.db"), PathBuf::from);
    let manager = BackoffManager::open(&path, Settings::default())?;
    let (mayor, witness) = (AgentId::parse("mayor")?, AgentId::parse("gastown-witness")?);

    let before = manager.get_interval(&witness)?;
    println!("database {}", path.display());
    println!("gastown-witness interval at start: {before} ms");
    if manager.should_poke(&mayor)? {
        manager.record_poke(&mayor)?;
    }
    manager.record_activity(&mayor)?;
    // The witness never answers: each run records one more miss, and the interval grows from
    // where the last run left it.
    manager.record_poke(&witness)?;
    manager.record_miss(&witness)?;
    println!(
        "gastown-witness interval now: {} ms",
        manager.get_interval(&witness)?
    );
    for (id, interval) in manager.stats()? {
        println!("stats: {id} {interval} ms");
    }
    Ok(())
}
