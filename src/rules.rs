//! The rules of SPEC §2-3 and §7 over one agent, as pure functions: when it is due, whether a
//! pass records a miss, whether an activity source's value is an answer, what the pass sends
//! (a poke, a rung of the ladder, or a rung held by its cap), and how each transition changes
//! the agent's state.
//!
//! This is the one decision. The daemon's pass, `poked explain` and `poked plan` all decide
//! with these functions, and the store applies the same ones before it writes; nothing here
//! reads a clock, draws a random number or does I/O: the time and the draw are arguments, and
//! what the decision needs from the log (the ladder's rungs and the cap's recent escalations)
//! comes through the [`Ladder`] trait.
//!
//! `next_due_at` itself is computed by SQLite (a generated column, so the due query is an index
//! range scan); [`next_due`] is the same formula in Rust for explaining and planning, and a test
//! holds the two against each other.

use crate::agent::{Agent, Freshness, Rung};
use crate::backoff;
use crate::clock::Millis;
use crate::error::Result;
use crate::random::Draw;

/// The three terms of SPEC §3's next due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// P: the creation time if never poked, else last poke + wait.
    pub p: Millis,
    /// A: last activity + fresh, `None` when never active.
    pub a: Option<Millis>,
    /// H: the hold, `None` when there is none.
    pub h: Option<Millis>,
}

/// Which term decides the next due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    P,
    A,
    H,
}

impl Term {
    /// `P`, `A` or `H`.
    pub fn as_str(self) -> &'static str {
        match self {
            Term::P => "P",
            Term::A => "A",
            Term::H => "H",
        }
    }
}

impl Terms {
    /// The terms of `agent` as its row stands.
    pub fn of(agent: &Agent) -> Terms {
        Terms {
            p: agent
                .last_poke_at
                .map_or(agent.created_at, |poke| poke.saturating_add(agent.wait_ms)),
            a: agent
                .last_activity_at
                .map(|at| at.saturating_add(agent.settings.fresh_ms)),
            h: agent.held_until_at,
        }
    }

    /// The later of the three (a missing term counts as the creation time, as in SQL), and
    /// which one that is (P on a tie, then A).
    pub fn latest(&self, created_at: Millis) -> (Millis, Term) {
        let mut best = (self.p, Term::P);
        for (at, term) in [(self.a, Term::A), (self.h, Term::H)] {
            let at = at.unwrap_or(created_at);
            if at > best.0 {
                best = (at, term);
            }
        }
        (best.0.max(created_at), best.1)
    }
}

/// SPEC §3's next due time: `None` when paused, else the latest of P, A and H. The same formula
/// as the generated column `agents.next_due_at`.
pub fn next_due(agent: &Agent) -> Option<Millis> {
    (!agent.paused).then(|| Terms::of(agent).latest(agent.created_at).0)
}

/// The three conditions under which a due pass records a miss (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissConditions {
    /// The agent was poked before.
    pub poked_before: bool,
    /// It has shown no activity since that poke.
    pub silent_since_poke: bool,
    /// It is very stale at the time of the pass.
    pub very_stale: bool,
}

impl MissConditions {
    /// The conditions for `agent` at `now`.
    pub fn of(agent: &Agent, now: Millis) -> MissConditions {
        MissConditions {
            poked_before: agent.last_poke_at.is_some(),
            silent_since_poke: agent.unanswered(),
            very_stale: agent.freshness(now) == Freshness::VeryStale,
        }
    }

    /// Whether all three hold.
    pub fn all(&self) -> bool {
        self.poked_before && self.silent_since_poke && self.very_stale
    }
}

/// An activity source (SPEC §3): the heartbeat file or the activity probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    HeartbeatFile,
    Probe,
}

impl Source {
    /// The value last seen from this source.
    pub fn seen(self, agent: &Agent) -> Option<Millis> {
        match self {
            Source::HeartbeatFile => agent.heartbeat_seen_at,
            Source::Probe => agent.probe_seen_at,
        }
    }

    /// Words for logs and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::HeartbeatFile => "heartbeat file",
            Source::Probe => "activity probe",
        }
    }
}

/// What one value read from an activity source means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The same value as last time: nothing new.
    Unchanged,
    /// A probe value no later than the last poke + echo: the poke's own echo, not an answer.
    Echo,
    /// A new value, but not later than the last activity.
    NotLater,
    /// Activity at this time (a value in the future counts as now).
    Activity(Millis),
}

impl Reading {
    /// Whether the value differs from the one stored as seen (so it must be stored).
    pub fn is_new(self) -> bool {
        self != Reading::Unchanged
    }
}

/// Judges `value` read from `source` for `agent` at `now` (SPEC §3, §7.1): it counts only when
/// it differs from the last value seen from that source and is later than the last activity;
/// a probe's value within the echo window of the last poke is the poke's own echo.
pub fn read_source(source: Source, value: Millis, agent: &Agent, now: Millis) -> Reading {
    if source.seen(agent) == Some(value) {
        return Reading::Unchanged;
    }
    let at = value.min(now);
    if source == Source::Probe
        && agent
            .last_poke_at
            .is_some_and(|poke| at <= poke.saturating_add(agent.settings.echo_ms))
    {
        return Reading::Echo;
    }
    if agent.last_activity_at.is_some_and(|last| at <= last) {
        return Reading::NotLater;
    }
    Reading::Activity(at)
}

/// The escalations that count against an agent's cap (SPEC §7.3): those whose command was run
/// (not `held`), since its last `reset` or `added` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// K: at most this many in any window.
    pub limit: i64,
    /// W: the window's length.
    pub window_ms: i64,
    /// The times of the counted escalations, oldest first.
    pub escalations: Vec<Millis>,
}

impl Cap {
    /// The counted escalations inside the window ending at `now`.
    pub fn in_window(&self, now: Millis) -> impl Iterator<Item = Millis> + '_ {
        let start = now.saturating_sub(self.window_ms);
        self.escalations
            .iter()
            .copied()
            .filter(move |&at| at > start && at <= now)
    }

    /// How many escalations count at `now`.
    pub fn count(&self, now: Millis) -> i64 {
        self.in_window(now).count() as i64
    }

    /// Whether one more escalation may run at `now`.
    pub fn allows(&self, now: Millis) -> bool {
        self.count(now) < self.limit
    }

    /// When the oldest escalation counted at `now` leaves the window, if any counts.
    pub fn oldest_leaves_at(&self, now: Millis) -> Option<Millis> {
        self.in_window(now)
            .min()
            .map(|at| at.saturating_add(self.window_ms))
    }
}

/// What the decision needs from the agent's ladder and log. The store answers inside the pass's
/// transaction; `explain` and `plan` answer from what they read.
pub trait Ladder {
    /// The rung that fires at exactly `misses` misses in a row, if there is one.
    fn rung(&mut self, misses: i64) -> Result<Option<Rung>>;
    /// The cap's recent escalations, read as of `now`.
    fn cap(&mut self, now: Millis) -> Result<Cap>;
}

/// The rung the misses reach next: the first whose count is above `misses` (`rungs` by misses).
pub fn next_rung(rungs: &[Rung], misses: i64) -> Option<&Rung> {
    rungs.iter().find(|r| r.misses > misses)
}

/// A ladder known in full: its rungs and its cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownLadder {
    pub rungs: Vec<Rung>,
    pub cap: Option<Cap>,
}

impl Ladder for KnownLadder {
    fn rung(&mut self, misses: i64) -> Result<Option<Rung>> {
        Ok(self.rungs.iter().find(|r| r.misses == misses).cloned())
    }

    fn cap(&mut self, _now: Millis) -> Result<Cap> {
        Ok(self.cap.clone().unwrap_or(Cap {
            limit: i64::MAX,
            window_ms: 1,
            escalations: Vec::new(),
        }))
    }
}

/// What a due pass sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A poke: the agent's command, if it has one.
    Poke,
    /// The rung's command, instead of the poke; the agent is then held for its grace.
    Escalate(Rung),
    /// A rung was reached but its cap is full: an `escalation` row with outcome `held`, and a
    /// poke instead.
    Held(Rung),
    /// A rung was reached while the gate was broken: no rung fires (a destructive step never
    /// runs on a broken gate), the agent is poked.
    Unfired(Rung),
}

/// The decision of one due pass for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether a miss is recorded first.
    pub miss: bool,
    pub action: Action,
}

/// Decides what a due pass does for `agent` at `now` (SPEC §3, §7.3): a miss when the three
/// conditions hold (and `allow_miss`: not on the first pass after a clock jump), then a poke, or
/// the rung that miss reaches when there is one, unless the gate failed (`gate_error`) or the
/// cap is full. Each rung is reached once per streak, so it fires at most once per streak.
pub fn decide(
    agent: &Agent,
    now: Millis,
    allow_miss: bool,
    gate_error: bool,
    ladder: &mut dyn Ladder,
) -> Result<Decision> {
    let miss = allow_miss && MissConditions::of(agent, now).all();
    if !miss {
        return Ok(Decision {
            miss,
            action: Action::Poke,
        });
    }
    let Some(rung) = ladder.rung(agent.consecutive_misses.saturating_add(1))? else {
        return Ok(Decision {
            miss,
            action: Action::Poke,
        });
    };
    let action = if gate_error {
        Action::Unfired(rung)
    } else if ladder.cap(now)?.allows(now) {
        Action::Escalate(rung)
    } else {
        Action::Held(rung)
    };
    Ok(Decision { miss, action })
}

/// Sets the interval and draws a new wait for it (SPEC §2: the wait is drawn again whenever the
/// interval changes).
fn set_interval(agent: &mut Agent, interval_ms: i64, draw: &dyn Draw) {
    agent.current_interval_ms = interval_ms;
    agent.wait_ms = backoff::wait(interval_ms, agent.settings.jitter, draw.draw());
}

/// A miss: misses + 1, the interval grows by the strategy, capped at max.
pub fn miss(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    let s = &agent.settings;
    let grown = backoff::after_miss(s.strategy, s.factor, agent.current_interval_ms, s.max_interval_ms);
    agent.consecutive_misses = agent.consecutive_misses.saturating_add(1);
    set_interval(agent, grown, draw);
    agent.updated_at = now;
}

/// A poke (or an escalation, a stronger poke): last poke = now, a new wait drawn.
pub fn poke(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    agent.last_poke_at = Some(now);
    agent.wait_ms = backoff::wait(agent.current_interval_ms, agent.settings.jitter, draw.draw());
    agent.updated_at = now;
}

/// Applies a due pass's decision: the miss, then the poke; an escalation also holds the agent
/// for its grace. Returns the agent as it was right after the miss, when there was one (what
/// the `miss` log row records).
pub fn apply(agent: &mut Agent, decision: &Decision, now: Millis, draw: &dyn Draw) -> Option<Agent> {
    let after_miss = decision.miss.then(|| {
        miss(agent, now, draw);
        agent.clone()
    });
    poke(agent, now, draw);
    if let Action::Escalate(_) = decision.action {
        agent.held_until_at = Some(now.saturating_add(agent.settings.grace_ms));
    }
    after_miss
}

/// A skip (SPEC §7.2): held for one wait, newly drawn; misses, interval and last poke unchanged.
pub fn skip(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    agent.wait_ms = backoff::wait(agent.current_interval_ms, agent.settings.jitter, draw.draw());
    agent.held_until_at = Some(now.saturating_add(agent.wait_ms));
    agent.updated_at = now;
}

/// Activity at `at` (a time in the future counts as now): misses = 0, interval = base. The
/// last activity never moves backwards.
pub fn activity(agent: &mut Agent, at: Millis, now: Millis, draw: &dyn Draw) -> Millis {
    let at = at.min(now);
    back_to_base(agent, now, draw);
    agent.last_activity_at = Some(agent.last_activity_at.map_or(at, |last| last.max(at)));
    at
}

/// A reset: misses = 0, interval = base, and any hold lifted (the activity time is unchanged).
pub fn reset(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    back_to_base(agent, now, draw);
    agent.held_until_at = None;
}

fn back_to_base(agent: &mut Agent, now: Millis, draw: &dyn Draw) {
    agent.consecutive_misses = 0;
    set_interval(agent, agent.settings.base_interval_ms, draw);
    agent.updated_at = now;
}

/// One step of a plan: what a due pass would do if the agent never answers and its gate stays
/// open.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStep {
    /// When, with every wait at its longest (the interval itself).
    pub at: Millis,
    /// When, with every wait at its shortest (jitter drawn in full); equal to `at` without jitter.
    pub earliest_at: Millis,
    /// Misses in a row after the pass.
    pub misses: i64,
    /// The interval after the pass.
    pub interval_ms: i64,
    /// The wait drawn at this pass lies in `[wait_min_ms, interval_ms]`.
    pub wait_min_ms: i64,
    pub action: Action,
}

/// The next `count` due passes of `agent` after `now` if it never answers and its gate stays
/// open, decided and applied by the functions above (SPEC §8); an agent already due is due at
/// `now`. `ladder` holds its rungs and its cap as stored; escalations the plan fires join the
/// cap as they would join the log.
pub fn plan(agent: &Agent, ladder: &KnownLadder, now: Millis, count: usize) -> Result<Vec<PlanStep>> {
    if agent.paused {
        return Ok(Vec::new());
    }
    let longest = backoff_draw(0.0);
    let shortest = backoff_draw(1.0);
    let mut late = (agent.clone(), ladder.clone());
    let mut early = (agent.clone(), ladder.clone());
    let mut steps = Vec::with_capacity(count);
    for _ in 0..count {
        let at = next_due(&late.0).unwrap_or(now).max(now);
        let earliest_at = next_due(&early.0).unwrap_or(now).max(now);
        let decision = step(&mut late, at, &longest)?;
        step(&mut early, earliest_at, &shortest)?;
        let a = &late.0;
        steps.push(PlanStep {
            at,
            earliest_at: earliest_at.min(at),
            misses: a.consecutive_misses,
            interval_ms: a.current_interval_ms,
            wait_min_ms: backoff::wait(a.current_interval_ms, a.settings.jitter, shortest.0),
            action: decision.action,
        });
    }
    Ok(steps)
}

/// One simulated pass of [`plan`].
fn step(state: &mut (Agent, KnownLadder), at: Millis, draw: &dyn Draw) -> Result<Decision> {
    let (agent, ladder) = state;
    let decision = decide(agent, at, true, false, ladder)?;
    apply(agent, &decision, at, draw);
    agent.next_due_at = next_due(agent);
    if let (Action::Escalate(_), Some(cap)) = (&decision.action, ladder.cap.as_mut()) {
        cap.escalations.push(at);
    }
    Ok(decision)
}

/// A fixed draw for planning: 0 gives the longest wait, 1 the shortest (the bound of the range
/// SPEC §2 draws from).
struct PlanDraw(f64);

impl Draw for PlanDraw {
    fn draw(&self) -> f64 {
        self.0
    }
}

fn backoff_draw(x: f64) -> PlanDraw {
    PlanDraw(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentId, Settings};

    const MIN: i64 = 60_000;

    fn agent(created_at: Millis) -> Agent {
        let settings = Settings::default();
        Agent {
            id: AgentId::parse("w").unwrap(),
            current_interval_ms: settings.base_interval_ms,
            wait_ms: settings.base_interval_ms,
            settings,
            consecutive_misses: 0,
            last_poke_at: None,
            last_activity_at: None,
            paused: false,
            held_until_at: None,
            heartbeat_seen_at: None,
            probe_seen_at: None,
            created_at,
            updated_at: created_at,
            next_due_at: Some(created_at),
        }
    }

    #[test]
    fn the_plan_of_a_default_agent_is_the_spec_timeline() {
        let steps = plan(&agent(0), &KnownLadder::default(), 0, 7).unwrap();
        let at: Vec<Millis> = steps.iter().map(|s| s.at).collect();
        assert_eq!(
            at,
            vec![
                0,
                5 * MIN,
                12 * MIN + 30_000,
                23 * MIN + 45_000,
                40 * MIN + 37_500,
                65 * MIN + 56_250,
                95 * MIN + 56_250
            ]
        );
        let misses: Vec<i64> = steps.iter().map(|s| s.misses).collect();
        assert_eq!(misses, vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(
            steps
                .iter()
                .all(|s| s.earliest_at == s.at && s.action == Action::Poke)
        );
    }

    #[test]
    fn the_ladder_fires_once_per_streak_and_the_cap_holds() {
        let rung = |n: i64| Rung {
            misses: n,
            command: vec![format!("rung-{n}")],
        };
        let ladder = KnownLadder {
            rungs: vec![rung(3), rung(5)],
            cap: Some(Cap {
                limit: 1,
                window_ms: 6 * 60 * MIN,
                escalations: Vec::new(),
            }),
        };
        let steps = plan(&agent(0), &ladder, 0, 7).unwrap();
        let actions: Vec<&Action> = steps.iter().map(|s| &s.action).collect();
        assert_eq!(
            actions,
            vec![
                &Action::Poke,
                &Action::Poke,
                &Action::Poke,
                &Action::Escalate(rung(3)),
                &Action::Poke,
                &Action::Held(rung(5)),
                &Action::Poke,
            ]
        );
        // The escalation at 00:23:45 holds the agent for its grace; P (00:40:37.5) still wins.
        assert_eq!(steps[4].at, 40 * MIN + 37_500);
    }

    #[test]
    fn sources_count_once_and_not_within_the_echo() {
        let mut a = agent(0);
        a.last_poke_at = Some(10 * MIN);
        a.heartbeat_seen_at = Some(3 * MIN);
        let now = 20 * MIN;
        assert_eq!(
            read_source(Source::HeartbeatFile, 3 * MIN, &a, now),
            Reading::Unchanged
        );
        assert_eq!(
            read_source(Source::HeartbeatFile, 4 * MIN, &a, now),
            Reading::Activity(4 * MIN)
        );
        assert_eq!(
            read_source(Source::Probe, 10 * MIN + 2_000, &a, now),
            Reading::Echo
        );
        assert_eq!(
            read_source(Source::Probe, 10 * MIN + 2_001, &a, now),
            Reading::Activity(10 * MIN + 2_001)
        );
        assert_eq!(
            read_source(Source::HeartbeatFile, 99 * MIN, &a, now),
            Reading::Activity(now)
        );
        a.last_activity_at = Some(15 * MIN);
        assert_eq!(
            read_source(Source::HeartbeatFile, 14 * MIN, &a, now),
            Reading::NotLater
        );
    }

    #[test]
    fn a_skip_holds_for_one_wait_and_changes_nothing_else() {
        let mut a = agent(0);
        a.last_poke_at = Some(0);
        a.consecutive_misses = 2;
        let before = a.clone();
        skip(&mut a, 7 * MIN, &crate::random::FixedDraw(0.0));
        assert_eq!(a.held_until_at, Some(12 * MIN));
        assert_eq!(
            (a.consecutive_misses, a.current_interval_ms, a.last_poke_at),
            (
                before.consecutive_misses,
                before.current_interval_ms,
                before.last_poke_at
            )
        );
    }
}
