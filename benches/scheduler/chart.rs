//! `docs/due-query.svg`: the due query's median time against the number of agents, drawn only
//! when the run is given `--write-chart`, so an ordinary `cargo bench` leaves the tracked file
//! alone. Text is drawn as `<text>` elements, so no font files are needed.

use std::path::Path;

/// Draws `points` (agents, milliseconds) with a log-scaled agent axis.
pub fn draw(path: &Path, points: &[(f64, f64)], due: usize) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.25;
    let right = points.iter().map(|p| p.0).fold(1_000.0, f64::max) * 1.25;
    let root = SVGBackend::new(path, (640, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("poked: finding {due} due agents and the next due time"),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((800f64..right).log_scale(), 0f64..top.max(0.1))?;
    chart
        .configure_mesh()
        .x_desc("agents in the database")
        .y_desc("milliseconds (median)")
        .x_label_formatter(&|x| match *x {
            x if x >= 1e6 => format!("{:.0}M", x / 1e6),
            x if x >= 1e3 => format!("{:.0}k", x / 1e3),
            x => format!("{x:.0}"),
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    root.present()?;
    Ok(())
}
