//! What a run prints: one table row per measurement for people, notes that explain a figure or
//! say why it is null, and, as the very last line, one JSON object with every key for machines.
//!
//! Every key is always present, in a fixed order, so a script can compare runs; a key whose
//! measurement did not run or could not be made is `null`, and a note says why.

/// One line of the table: what was measured, poked's figure, its baseline's, the value (a ratio
/// or a figure) and the target it is held to.
struct Row {
    name: String,
    poked: String,
    floor: String,
    value: f64,
    target: &'static str,
}

/// Two times in seconds as milliseconds, for [`Report::row`].
pub fn millis(seconds: [f64; 2]) -> [String; 2] {
    seconds.map(|s| format!("{:.3} ms", s * 1e3))
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    figures: Vec<(&'static str, Option<f64>)>,
}

impl Report {
    /// Adds a line to the table: `sides` are poked's figure and its baseline's, as text.
    pub fn row(&mut self, name: String, [poked, floor]: [String; 2], value: f64, target: &'static str) {
        self.rows.push(Row {
            name,
            poked,
            floor,
            value,
            target,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Sets the value of a JSON key.
    pub fn figure(&mut self, key: &'static str, value: Option<f64>) {
        self.figures.push((key, value));
    }

    fn value(&self, key: &str) -> Option<f64> {
        self.figures
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
    }

    /// The table, the notes, a summary line, and last the JSON line with `keys` in order.
    pub fn print(&self, keys: &[&str], summary: &str) {
        self.print_table();
        for note in &self.notes {
            println!("note: {note}");
        }
        println!("{summary}");
        let json: Vec<String> = keys
            .iter()
            .map(|key| {
                let text = match self.value(key) {
                    None => "null".to_string(),
                    Some(v) if v.is_finite() && key.ends_with("_per_s") => format!("{v:.0}"),
                    Some(v) if v.is_finite() => format!("{}", (v * 1000.0).round() / 1000.0),
                    Some(_) => "null".to_string(),
                };
                format!("\"{key}\":{text}")
            })
            .collect();
        println!("{{{}}}", json.join(","));
    }

    fn print_table(&self) {
        let width = |f: fn(&Row) -> &str, min: usize| {
            self.rows
                .iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (w0, w1, w2) = (
            width(|r| &r.name, 11),
            width(|r| &r.poked, 5),
            width(|r| &r.floor, 18),
        );
        println!();
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>8}  target",
            "measurement", "poked", "floor / small size", "value"
        );
        for r in &self.rows {
            println!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>8.3}  {}",
                r.name, r.poked, r.floor, r.value, r.target
            );
        }
    }
}
