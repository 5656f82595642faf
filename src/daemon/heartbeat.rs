//! Heartbeat files: an agent's file whose modification time, when it changes, is activity.
//!
//! The file is only `stat`ed, never opened, created or written. A missing or unreadable file is
//! simply no activity; it is logged once when it goes missing and once when it comes back, not
//! at every pass. What a modification time means (new? later than the last activity? in the
//! future?) is decided by [`crate::rules::read_source`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use crate::agent::AgentId;
use crate::clock::Millis;

/// Reads heartbeat files and remembers which ones it already warned about.
#[derive(Debug, Default)]
pub struct Heartbeats {
    warned: Mutex<HashSet<AgentId>>,
}

impl Heartbeats {
    /// The modification time of `path` in Unix milliseconds, or `None` when it cannot be read.
    pub fn mtime(&self, agent: &AgentId, path: &str) -> Option<Millis> {
        let result = std::fs::metadata(Path::new(path)).and_then(|meta| meta.modified());
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(time) => {
                if warned.remove(agent) {
                    tracing::info!(agent = agent.as_str(), path, "heartbeat file is readable again");
                }
                // A modification time before 1970 counts as no activity.
                let ms = time.duration_since(UNIX_EPOCH).ok()?.as_millis();
                Some(i64::try_from(ms).unwrap_or(i64::MAX))
            }
            Err(e) => {
                if warned.insert(agent.clone()) {
                    tracing::warn!(agent = agent.as_str(), path, error = %e, "cannot read heartbeat file; counting no activity from it");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mtime_and_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hb");
        let heartbeats = Heartbeats::default();
        let a = AgentId::parse("a").unwrap();
        assert_eq!(heartbeats.mtime(&a, path.to_str().unwrap()), None);
        std::fs::write(&path, b"").unwrap();
        let at = heartbeats.mtime(&a, path.to_str().unwrap()).expect("mtime");
        let expected = std::fs::metadata(&path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap();
        assert_eq!(at, expected.as_millis() as i64);
        assert!(
            heartbeats.warned.lock().unwrap().is_empty(),
            "warning not cleared"
        );
    }
}
