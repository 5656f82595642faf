//! Metrics and alerts (SPEC §8): `poked metrics` read by two parsers (a strict one here, and the
//! `prometheus-parse` crate) and compared value by value with the database, the daemon's
//! `/metrics` endpoint over real TCP connections, counters across a restart, and the alert rules
//! of `contrib/` against the names a real scrape exports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Env, all_rows, must, output_within, poked, tool, wait_for};
use crate::harness::{Daemon, PATIENCE};

/// A series: its metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed exposition: each family's type, and each series' value.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    values: BTreeMap<Series, f64>,
}

impl Exposition {
    /// Parses `text` strictly by the text format (version 0.0.4): every line is a `# HELP`, a
    /// `# TYPE` or a sample; each family's HELP and TYPE come once, before its samples, and its
    /// samples stand together; names and label names are well formed, label values properly
    /// escaped, no series appears twice. Then `prometheus-parse` must read the same samples.
    fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        let mut helped = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut closed = BTreeSet::new();
        assert!(text.ends_with('\n'), "the exposition must end with a line feed");
        for (n, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert!(valid_name(name) && !help.is_empty(), "{}", at());
                assert!(helped.insert(name.to_string()), "a second HELP: {}", at());
                if let Some(done) = current.replace(name.to_string()) {
                    closed.insert(done);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert_eq!(current.as_deref(), Some(name), "TYPE without its HELP: {}", at());
                assert!(["counter", "gauge"].contains(&kind), "{}", at());
                assert!(
                    out.types.insert(name.to_string(), kind.to_string()).is_none(),
                    "a second TYPE: {}",
                    at()
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{}", at());
            let (series, value) = sample(line).unwrap_or_else(|e| panic!("{e}: {}", at()));
            assert_eq!(
                current.as_deref(),
                Some(series.0.as_str()),
                "a sample outside its family: {}",
                at()
            );
            assert!(!closed.contains(&series.0), "{}", at());
            assert!(
                out.types.contains_key(&series.0),
                "a sample before its TYPE: {}",
                at()
            );
            assert!(
                out.values.insert(series, value).is_none(),
                "a series twice: {}",
                at()
            );
        }

        // A second, independent reader must see the same samples and types.
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus-parse reads it");
        assert_eq!(
            scrape.samples.len(),
            out.values.len(),
            "prometheus-parse saw other samples"
        );
        for s in &scrape.samples {
            let labels: BTreeMap<String, String> =
                s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let (kind, value) = match s.value {
                prometheus_parse::Value::Counter(v) => ("counter", v),
                prometheus_parse::Value::Gauge(v) => ("gauge", v),
                ref other => panic!("{}: unexpected {other:?}", s.metric),
            };
            assert_eq!(
                out.types.get(&s.metric).map(String::as_str),
                Some(kind),
                "{}",
                s.metric
            );
            assert_eq!(
                out.values.get(&(s.metric.clone(), labels)),
                Some(&value),
                "{}",
                s.metric
            );
        }
        out
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.values.get(&(name.to_string(), labels)).copied()
    }

    /// The value of a series that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?}"))
    }

    /// How many series of `name` there are.
    fn count(&self, name: &str) -> usize {
        self.values.keys().filter(|(n, _)| n == name).count()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One sample line: `name{label="value",...} value`, with escapes read as the format says.
fn sample(line: &str) -> Result<(Series, f64), String> {
    let end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..end];
    if !valid_name(name) {
        return Err(format!("bad name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unclosed labels")?;
            let eq = inner[start..].find('=').ok_or("a label without =")? + start;
            let label = &inner[start..eq];
            let ok = label
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok || !inner[eq + 1..].starts_with('"') {
                return Err(format!("bad label {label:?}"));
            }
            while chars.next_if(|(i, _)| *i <= eq + 1).is_some() {}
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unclosed label value")? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next().ok_or("a lone backslash")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (_, '\n') => return Err("a raw line feed".into()),
                    (_, c) => value.push(c),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next().ok_or("unclosed labels")? {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &inner[i + 1..];
                    break;
                }
                (_, c) => return Err(format!("{c:?} after a label")),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    Ok(((name.to_string(), labels), value))
}

/// `poked metrics` on `db`, at `now` if given, parsed.
fn scrape(db: &Path, now: Option<&str>) -> Exposition {
    let mut cmd = poked(db);
    if let Some(now) = now {
        cmd.env("POKED_NOW", now);
    }
    let out = cmd.arg("metrics").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Exposition::parse(&String::from_utf8(out.stdout).unwrap())
}

/// An agent's id, misses, interval, max interval, next due, last activity and hold, from SQL.
type AgentRow = (String, i64, i64, i64, Option<i64>, Option<i64>, Option<i64>);

/// Milliseconds as the seconds a metric carries.
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[test]
fn poked_metrics_agree_with_the_database_value_by_value() {
    let env = Env::new();
    let at = |t: &str| format!("2026-01-01T00:{t}Z");
    let quick = ["--base", "1m", "--fresh", "0s", "--very-stale", "0s"];
    let add = |id: &str, extra: &[&str]| {
        env.ok(&at("00:00"), &[&["add", id][..], extra].concat());
    };
    add("ok", &[&quick[..], &["--", "true"]].concat());
    add("failing", &[&quick[..], &["--", "false"]].concat());
    add("paused", &["--paused"]);
    add("gated", &["--only-if", "false", "--", "true"]);
    add("active", &[]);
    env.ok(&at("00:00"), &["activity", "active"]);
    // A ladder whose cap (one escalation in 6h) holds its second rung.
    add(
        "laddered",
        &[
            &quick[..],
            &[
                "--grace",
                "0s",
                "--escalate",
                "1:true",
                "--escalate-limit",
                "1/6h",
                "--",
                "true",
            ],
        ]
        .concat(),
    );
    for (now, activity) in [
        ("00:00", None),
        ("01:00", Some("01:10")),
        ("02:00", None),
        ("03:00", None),
    ] {
        env.ok(&at(now), &["run", "--once"]);
        if let Some(t) = activity {
            env.ok(&at(t), &["activity", "laddered"]);
        }
    }
    let now = at("03:10");
    let m = scrape(&env.db, Some(&now));
    let now_ms = crate::common::ms(&now);

    // The database's own account, the log counted directly (not through the counters table).
    let conn = env.sql();
    let counted = |sql: &str| -> i64 { conn.query_row(sql, [now_ms], |r| r.get(0)).unwrap() };
    let states = [
        ("due", "NOT paused AND next_due_at <= ?1"),
        (
            "backing_off",
            "NOT paused AND next_due_at > ?1 AND consecutive_misses > 0",
        ),
        (
            "waiting",
            "NOT paused AND next_due_at > ?1 AND consecutive_misses = 0",
        ),
        ("paused", "paused AND ?1 = ?1"),
        ("held", "NOT paused AND held_until_at > ?1"),
    ];
    for (state, condition) in states {
        let want = counted(&format!("SELECT count(*) FROM agents WHERE {condition}"));
        assert_eq!(
            m.value("poked_agents", &[("state", state)]),
            want as f64,
            "{state}"
        );
    }
    assert_eq!(
        m.value("poked_agents", &[("state", "held")]),
        1.0,
        "the gate's skip holds one"
    );

    let rows: Vec<AgentRow> = all_rows(
        &conn,
        "SELECT id, consecutive_misses, current_interval_ms, max_interval_ms, next_due_at,
                last_activity_at, held_until_at FROM agents ORDER BY id",
    );
    assert_eq!(rows.len(), 6);
    for (id, misses, interval, max, due, activity, held) in &rows {
        let agent = [("agent", id.as_str())];
        assert_eq!(
            m.value("poked_agent_consecutive_misses", &agent),
            *misses as f64,
            "{id}"
        );
        assert_eq!(
            m.value("poked_agent_interval_seconds", &agent),
            seconds(*interval),
            "{id}"
        );
        assert_eq!(
            m.value("poked_agent_max_interval_seconds", &agent),
            seconds(*max),
            "{id}"
        );
        assert_eq!(
            m.get("poked_agent_next_due_timestamp_seconds", &agent),
            due.map(seconds),
            "{id}"
        );
        let active = m.get("poked_agent_last_activity_timestamp_seconds", &agent);
        assert_eq!(active, activity.map(seconds), "{id}");
        let held = held.filter(|h| *h > now_ms).map(seconds);
        assert_eq!(
            m.get("poked_agent_held_until_timestamp_seconds", &agent),
            held,
            "{id}"
        );
    }
    for name in [
        "poked_agent_consecutive_misses",
        "poked_agent_interval_seconds",
        "poked_agent_max_interval_seconds",
        "poked_skips_total",
        "poked_misses_total",
    ] {
        assert_eq!(m.count(name), rows.len(), "{name}: one series per agent");
    }
    assert!(rows.iter().any(|r| r.1 > 0), "some agent has misses");

    // Counters: every (agent, outcome) the log holds, and zeros for the outcomes it does not.
    let log: BTreeMap<(String, String, String), i64> = all_rows::<(String, String, String, i64)>(
        &conn,
        "SELECT agent_id, kind, coalesce(outcome, ''), count(*) FROM poke_log GROUP BY 1, 2, 3",
    )
    .into_iter()
    .map(|(id, kind, outcome, n)| ((id, kind, outcome), n))
    .collect();
    let logged = |id: &str, kind: &str, outcome: &str| {
        log.get(&(id.to_string(), kind.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0) as f64
    };
    for (id, ..) in &rows {
        let id = id.as_str();
        for outcome in ["sent", "ok", "failed", "timeout", "error", "interrupted"] {
            let got = m.value("poked_pokes_total", &[("agent", id), ("outcome", outcome)]);
            assert_eq!(got, logged(id, "poke", outcome), "{id} pokes {outcome}");
        }
        for outcome in ["ok", "failed", "timeout", "error", "interrupted", "held"] {
            let got = m.value("poked_escalations_total", &[("agent", id), ("outcome", outcome)]);
            assert_eq!(
                got,
                logged(id, "escalation", outcome),
                "{id} escalations {outcome}"
            );
        }
        let skips: f64 = log
            .iter()
            .filter(|((a, k, _), _)| a == id && k == "skip")
            .map(|(_, n)| *n as f64)
            .sum();
        assert_eq!(
            m.value("poked_skips_total", &[("agent", id)]),
            skips,
            "{id} skips"
        );
        assert_eq!(
            m.value("poked_misses_total", &[("agent", id)]),
            logged(id, "miss", ""),
            "{id}"
        );
    }
    // The timeline made one of each kind of interesting count.
    for (name, labels, want) in [
        ("poked_pokes_total", [("agent", "ok"), ("outcome", "ok")], 3.0),
        (
            "poked_pokes_total",
            [("agent", "failing"), ("outcome", "failed")],
            3.0,
        ),
        (
            "poked_escalations_total",
            [("agent", "laddered"), ("outcome", "ok")],
            1.0,
        ),
        (
            "poked_escalations_total",
            [("agent", "laddered"), ("outcome", "held")],
            1.0,
        ),
    ] {
        assert_eq!(m.value(name, &labels), want, "{name}{labels:?}");
    }
    assert_eq!(m.value("poked_skips_total", &[("agent", "gated")]), 1.0);

    // No daemon: down, and never passed (`run --once` records no daemon).
    assert_eq!(m.value("poked_daemon_up", &[]), 0.0);
    assert_eq!(m.count("poked_daemon_last_pass_timestamp_seconds"), 0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.value("poked_build_info", &[("version", version)]), 1.0);

    // Conventions: the prefix, counters end in _total, instants in _timestamp_seconds.
    for (name, kind) in &m.types {
        assert!(name.starts_with("poked_"), "{name}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        assert!(
            !name.contains("_ms") && !name.contains("millis"),
            "{name}: base units"
        );
    }
}

/// The daemon's metrics address, from the line its log gives it.
fn metrics_address(daemon: &Daemon) -> SocketAddr {
    let mut address = None;
    wait_for(PATIENCE, || {
        address = daemon.log_text().lines().find_map(|l| {
            let rest = l.split("serving metrics at http://").nth(1)?;
            rest.split("/metrics").next()?.parse().ok()
        });
        address.is_some()
    });
    address.unwrap_or_else(|| panic!("no metrics address in the log: {}", daemon.log_text()))
}

/// A raw HTTP/1.1 exchange: the status line, the headers and the body.
fn http(address: SocketAddr, request: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

fn get(address: SocketAddr, path: &str) -> (String, String, String) {
    http(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: poked\r\nAccept: */*\r\n\r\n"),
    )
}

#[test]
fn the_daemon_serves_metrics_over_http_and_a_silent_client_holds_up_nothing() {
    let env = Env::new();
    must(&env.db, &["add", "a", "--base", "1h", "--", "true"]);
    let daemon = Daemon::start(&env.db, &["--metrics-listen", "127.0.0.1:0"]);
    let address = metrics_address(&daemon);
    let ok = "SELECT count(*) FROM poke_log WHERE agent_id = 'a' AND outcome = 'ok'";
    assert!(wait_for(PATIENCE, || env.count(ok) == 1));

    let (status, headers, body) = get(address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(
        headers.contains(&format!("content-length: {}", body.len())),
        "{headers}"
    );
    let served = Exposition::parse(&body);
    assert_eq!(served.value("poked_daemon_up", &[]), 1.0);
    assert_eq!(
        served.value("poked_pokes_total", &[("agent", "a"), ("outcome", "ok")]),
        1.0
    );
    let last_pass = env.count("SELECT last_pass_at FROM daemon");
    let shown = served.value("poked_daemon_last_pass_timestamp_seconds", &[]);
    assert!(
        shown >= seconds(last_pass) - 60.0 && shown <= seconds(last_pass),
        "{shown}"
    );
    // The same families as `poked metrics`, which also sees the daemon.
    let printed = scrape(&env.db, None);
    assert_eq!(served.types, printed.types);
    assert_eq!(printed.value("poked_daemon_up", &[]), 1.0);

    // Other paths and methods.
    assert_eq!(get(address, "/").0, "HTTP/1.1 404 Not Found");
    assert_eq!(get(address, "/metrics/x").0, "HTTP/1.1 404 Not Found");
    assert_eq!(get(address, "/metrics?name[]=poked_agents").0, "HTTP/1.1 200 OK");
    let post = http(address, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.0, "HTTP/1.1 405 Method Not Allowed");
    let head = http(address, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((head.0.as_str(), head.2.as_str()), ("HTTP/1.1 200 OK", ""));
    assert_eq!(http(address, "nonsense\r\n\r\n").0, "HTTP/1.1 400 Bad Request");

    // A client that connects and says nothing holds the endpoint, never the loop: a new agent
    // is poked as promptly as ever meanwhile.
    let silent = TcpStream::connect(address).unwrap();
    let added = Instant::now();
    must(&env.db, &["add", "b", "--base", "1h"]);
    let b = "SELECT count(*) FROM poke_log WHERE agent_id = 'b' AND kind = 'poke'";
    assert!(wait_for(PATIENCE, || env.count(b) == 1));
    assert!(
        added.elapsed() < Duration::from_secs(3),
        "poked after {:?}",
        added.elapsed()
    );
    drop(silent);
    daemon.stop().unwrap();
    assert!(
        TcpStream::connect(address).is_err(),
        "still listening after the daemon stopped"
    );
    assert_eq!(scrape(&env.db, None).value("poked_daemon_up", &[]), 0.0);
}

#[test]
fn a_client_that_takes_the_answer_slowly_holds_the_endpoint_no_longer_than_the_write_time() {
    // 20,000 agents make an answer of about 20 MB, more than the two sockets' buffers hold. A
    // client taking 1 KiB every 20 ms (50 KB/s) would need minutes; each write of the answer
    // used to get its own 5 s, so the trickle held the one-connection endpoint (and a
    // stopping daemon) that long. The whole answer gets WRITE_TIME now, and the next scrape
    // is served meanwhile.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let env = Env::new();
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"id\":\"agent-{i:05}\",\"created_at\":\"2026-01-01T00:00:00Z\"}}\n"))
        .collect();
    let file = env.dir.path().join("fleet.jsonl");
    std::fs::write(&file, lines).unwrap();
    must(&env.db, &["import", file.to_str().unwrap()]);
    let daemon = Daemon::start(&env.db, &["--metrics-listen", "127.0.0.1:0"]);
    let address = metrics_address(&daemon);
    let (taken, done) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (status, waited) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut slow = TcpStream::connect(address).unwrap();
            slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut chunk = [0u8; 1024];
            while !done.load(Ordering::SeqCst) {
                match slow.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        taken.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
                // The pace of the slow client, not a wait for anything.
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // The slow client stops when this scope ends, a failed scrape's panic included.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&done);
        let started = wait_for(PATIENCE, || taken.load(Ordering::SeqCst) > 0);
        let asked = Instant::now();
        let status = started.then(|| get(address, "/metrics").0);
        (status, asked.elapsed())
    });
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the slow answer never started"
    );
    assert!(
        waited < Duration::from_secs(20),
        "a scrape waited {waited:?} behind a slow client"
    );
}

#[test]
fn counters_survive_a_daemon_restart() {
    let env = Env::new();
    must(
        &env.db,
        &[
            "add", "beat", "--base", "200ms", "--max", "200ms", "--fresh", "0s", "--", "true",
        ],
    );
    let ok = [("agent", "beat"), ("outcome", "ok")];
    let daemon = Daemon::start(&env.db, &[]);
    let logged = "SELECT count(*) FROM poke_log WHERE outcome = 'ok'";
    assert!(wait_for(PATIENCE, || env.count(logged) >= 3));
    daemon.stop().unwrap();
    let before = scrape(&env.db, None).value("poked_pokes_total", &ok);
    assert_eq!(before, env.count(logged) as f64);
    assert!(before >= 3.0);

    let daemon = Daemon::start(&env.db, &["--metrics-listen", "127.0.0.1:0"]);
    let served = Exposition::parse(&get(metrics_address(&daemon), "/metrics").2);
    let after = served.value("poked_pokes_total", &ok);
    assert!(after >= before, "the counter went back from {before} to {after}");
    daemon.stop().unwrap();
    assert_eq!(
        scrape(&env.db, None).value("poked_pokes_total", &ok),
        env.count(logged) as f64
    );
}

/// The metric names a PromQL expression reads: its identifiers, less functions (followed by
/// `(`), keywords, label lists of `by`/`on`/..., label matchers, ranges, strings and numbers.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 23] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        // Aggregations, which may put `by (...)` between their name and their parenthesis.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let mut names = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut previous_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if ["by", "without", "on", "ignoring", "group_left", "group_right"]
                .contains(&previous_word.as_str()) =>
            {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                previous_word.clear();
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let call = j < chars.len() && chars[j] == '(';
                if !call && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word.clone());
                }
                previous_word = word;
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn every_name_the_alert_rules_use_is_one_poked_exports() {
    // The reader itself: what it must and must not take for a metric.
    assert_eq!(
        metric_names(r#"sum by (agent) (rate(x_total{outcome="held"}[5m] offset 1h)) > on (instance) 2 * y"#),
        ["x_total", "y"]
    );
    let env = Env::new();
    must(&env.db, &["add", "a"]);
    let exported = scrape(&env.db, None).types;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/poked.rules.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
    let rules = docs[0]["groups"][0]["rules"].as_vec().expect("groups[0].rules");
    let mut alerts = Vec::new();
    for rule in rules {
        let alert = rule["alert"].as_str().expect("an alert name");
        let expr = rule["expr"].as_str().expect("an expression");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{alert} reads no metric: {expr}");
        // `up` is Prometheus's own series for each scrape target (a dead daemon answers none).
        for name in names.into_iter().filter(|name| name != "up") {
            assert!(
                exported.contains_key(&name),
                "{alert} reads {name}, which poked does not export"
            );
        }
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key].as_str().is_some(),
                "{alert} has no {key}"
            );
        }
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{alert} has no severity"
        );
        alerts.push(alert.to_string());
    }
    for wanted in [
        "PokedAgentUnanswered",
        "PokedEscalationHeld",
        "PokedDaemonStale",
        "PokedDaemonDown",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "no {wanted}: {alerts:?}");
    }
    // Prometheus's own tool, where it is installed (CI installs it): the rules load, and their
    // unit tests (contrib/poked.rules.test.yml) fire each alert when it should and not before.
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let contrib = Path::new(path).parent().unwrap();
    for args in [
        &["check", "rules", "poked.rules.yml"][..],
        &["test", "rules", "poked.rules.test.yml"],
    ] {
        let mut promtool = std::process::Command::new(&promtool);
        let out = output_within(promtool.args(args).current_dir(contrib), PATIENCE);
        let said = [out.stdout, out.stderr].concat();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&said)
        );
    }
}
