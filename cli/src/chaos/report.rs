//! The run's figures: per-second throughput, latency and errors, availability and recovery
//! per fault, the verdict table printed on stdout, and `report.json` / `report.html` (one
//! self-contained page of SVG plots drawn with `plotters`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use super::checker::{Findings, MAX_NAMED};
use super::nemesis::{Event, FaultKind};
use super::workload::{Op, OpKind, Outcome};

/// Seconds before a fault whose throughput is its baseline.
const BASELINE: u64 = 5;
/// Seconds after a fault heals in which its after-fault error rate is measured.
const AFTERMATH: u64 = 5;
/// Share of the baseline throughput a recovered cluster is back to.
const RECOVERED: f64 = 0.9;

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    /// Seconds from the start.
    pub t: u64,
    /// Operations acknowledged that ended in this second.
    pub ok: u64,
    /// ... refused.
    pub failed: u64,
    /// ... of unknown outcome.
    pub unknown: u64,
    /// Median latency of acknowledged operations, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// A fault as it happened, with the availability around it.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    /// `partition-in n2,n3`, `kill n1`, ...
    pub label: String,
    /// The fault kind.
    pub kind: FaultKind,
    /// Its nodes.
    pub nodes: Vec<String>,
    /// When it was applied, seconds from the start.
    pub start: f64,
    /// When it healed.
    pub end: f64,
    /// Errors (failed or unknown) per second while it lasted.
    pub errors_per_s_during: f64,
    /// Errors per second in the 5 s after it healed.
    pub errors_per_s_after: f64,
    /// Acknowledged operations per second in the 5 s before it.
    pub baseline_ok_per_s: f64,
    /// Seconds from its heal until throughput is back to 90% of the baseline; `None` when
    /// it never was before the end of the run.
    pub recovery_s: Option<f64>,
}

impl FaultRecord {
    /// The record of `event` applied at `start` and healed at `end` (seconds), measured on
    /// `series`.
    pub fn new(event: &Event, start: f64, end: f64, series: &[Second]) -> Self {
        let (from, to) = (start.floor() as u64, end.ceil() as u64);
        let rate = |a: u64, b: u64, f: &dyn Fn(&Second) -> u64| {
            let secs: Vec<&Second> = series.iter().filter(|s| s.t >= a && s.t < b).collect();
            if secs.is_empty() {
                return 0.0;
            }
            secs.iter().map(|s| f(s)).sum::<u64>() as f64 / secs.len() as f64
        };
        let errors = |s: &Second| s.failed + s.unknown;
        let baseline = rate(from.saturating_sub(BASELINE), from, &|s| s.ok);
        let recovery_s = series
            .iter()
            .filter(|s| s.t >= to)
            .find(|s| s.ok as f64 >= RECOVERED * baseline)
            .map(|s| (s.t as f64 - end).max(0.0));
        FaultRecord {
            label: event.label(),
            kind: event.kind,
            nodes: event.node_names(),
            start,
            end,
            errors_per_s_during: rate(from, to.max(from + 1), &errors),
            errors_per_s_after: rate(to, to + AFTERMATH, &errors),
            baseline_ok_per_s: baseline,
            recovery_s,
        }
    }
}

/// Per-second figures of a run that lasted `seconds`.
pub fn series(ops: &[Op], seconds: u64) -> Vec<Second> {
    let mut out: Vec<Second> = (0..seconds)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut hists: Vec<Option<Histogram<u64>>> = (0..seconds).map(|_| None).collect();
    for op in ops {
        let t = op.end_us / 1_000_000;
        let Some(sec) = out.get_mut(usize::try_from(t).unwrap_or(usize::MAX)) else {
            continue;
        };
        match op.outcome {
            Outcome::Ok => {
                sec.ok += 1;
                let slot = &mut hists[t as usize];
                if slot.is_none() {
                    *slot = Histogram::new_with_bounds(1, 600_000_000, 3).ok();
                }
                if let Some(h) = slot {
                    h.saturating_record(op.end_us.saturating_sub(op.start_us).max(1));
                }
            }
            Outcome::Failed => sec.failed += 1,
            Outcome::Unknown => sec.unknown += 1,
        }
    }
    for (sec, h) in out.iter_mut().zip(hists) {
        if let Some(h) = h {
            sec.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
            sec.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
        }
    }
    out
}

/// Writes that failed while some fault was on, by mode and error kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultedWrites {
    /// Writes invoked while a fault was on.
    pub total: u64,
    /// Of those, not acknowledged.
    pub failed: u64,
    /// Not acknowledged, by error kind.
    pub by_error: BTreeMap<String, u64>,
}

/// Writes (puts, deletes, register writes) invoked while a fault was on, per mode
/// (`quorum`, `primary`).
pub fn faulted_writes(ops: &[Op], faults: &[FaultRecord]) -> BTreeMap<String, FaultedWrites> {
    let mut out: BTreeMap<String, FaultedWrites> = BTreeMap::new();
    for op in ops {
        if matches!(op.kind, OpKind::Read | OpKind::LinRead) {
            continue;
        }
        let t = op.start_us as f64 / 1e6;
        if !faults.iter().any(|f| f.start <= t && t < f.end) {
            continue;
        }
        let mode = if op.primary { "primary" } else { "quorum" };
        let w = out.entry(mode.to_string()).or_default();
        w.total += 1;
        if op.outcome != Outcome::Ok {
            w.failed += 1;
            let kind = op.error.clone().unwrap_or_else(|| "other".into());
            *w.by_error.entry(kind).or_default() += 1;
        }
    }
    out
}

/// Everything `report.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The command that repeats this run exactly (same schedule).
    pub replay: String,
    /// The run's settings.
    pub settings: BTreeMap<String, String>,
    /// The fault schedule as `--schedule` takes it.
    pub schedule: String,
    /// Operations invoked.
    pub ops: u64,
    /// ... acknowledged.
    pub ok: u64,
    /// ... refused.
    pub failed: u64,
    /// ... of unknown outcome.
    pub unknown: u64,
    /// Seconds from the end of the workload until every node was healed and seen alive.
    pub heal_s: f64,
    /// Seconds of settling before the check (bounded by `--settle`).
    pub settle_s: f64,
    /// What the checker found.
    pub findings: Findings,
    /// Whether nothing acknowledged was lost or wrong.
    pub clean: bool,
    /// Faults as they happened.
    pub faults: Vec<FaultRecord>,
    /// What the nemesis could not do (faults not applied, heals that failed), with when.
    pub nemesis_notes: Vec<String>,
    /// Writes issued during faults that failed, per mode.
    pub faulted_writes: BTreeMap<String, FaultedWrites>,
    /// Per-second figures.
    pub series: Vec<Second>,
}

impl Report {
    /// The verdict table printed on stdout.
    pub fn table(&self) -> String {
        let f = &self.findings;
        let named = |v: &Vec<String>| {
            if v.is_empty() {
                "0".to_string()
            } else {
                let shown: Vec<&str> = v.iter().take(MAX_NAMED).map(String::as_str).collect();
                format!(
                    "{} ({}{})",
                    v.len(),
                    shown.join(", "),
                    if v.len() > MAX_NAMED { ", ..." } else { "" }
                )
            }
        };
        let lin = match &f.not_linearizable {
            None => "not checked".to_string(),
            Some(bad) if bad.is_empty() => format!("ok ({} operations)", f.lin_ops),
            Some(bad) => format!("VIOLATED on {}", bad.join(", ")),
        };
        let rows = vec![
            (
                "operations",
                format!(
                    "{} ({} ok, {} failed, {} unknown)",
                    self.ops, self.ok, self.failed, self.unknown
                ),
            ),
            (
                "faults",
                if self.nemesis_notes.is_empty() {
                    self.faults.len().to_string()
                } else {
                    format!(
                        "{} applied; nemesis: {}",
                        self.faults.len(),
                        named(&self.nemesis_notes)
                    )
                },
            ),
            (
                "heal / settle",
                format!("{:.1} s / {:.1} s", self.heal_s, self.settle_s),
            ),
            ("keys checked", f.keys_checked.to_string()),
            ("lost", named(&f.lost)),
            ("resurrected", named(&f.resurrected)),
            ("stale registers", named(&f.stale)),
            ("unreadable", named(&f.unreadable)),
            (
                "replicas converged",
                format!(
                    "{} of {} sampled keys",
                    f.converged,
                    f.converged + f.diverged.len()
                ),
            ),
            ("linearizability", lin),
        ];
        let mut out = String::new();
        for (k, v) in rows {
            let label = if k.is_empty() {
                String::new()
            } else {
                format!("{k}:")
            };
            let _ = writeln!(out, "{label:<20} {v}");
        }
        for (mode, w) in &self.faulted_writes {
            let share = if w.total == 0 {
                0.0
            } else {
                100.0 * w.failed as f64 / w.total as f64
            };
            let _ = writeln!(
                out,
                "{mode} writes during faults: {} of {} failed ({share:.0}%)",
                w.failed, w.total
            );
            let mut why: Vec<(&String, &u64)> = w.by_error.iter().collect();
            why.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (kind, n) in why {
                let _ = writeln!(out, "  {n:>7}  {kind}");
            }
        }
        let _ = writeln!(out, "\nrecovery per fault:");
        for r in &self.faults {
            let rec = r
                .recovery_s
                .map_or("not recovered".to_string(), |s| format!("{s:.0} s"));
            let _ = writeln!(
                out,
                "  {:>6.1}-{:<6.1} {:<28} errors/s {:>6.1} during, {:>6.1} after; back to 90%: {rec}",
                r.start, r.end, r.label, r.errors_per_s_during, r.errors_per_s_after
            );
        }
        let _ = writeln!(
            out,
            "\nverdict: {}",
            if self.clean {
                "CLEAN: nothing acknowledged was lost or wrong"
            } else {
                "FAILED: see above"
            }
        );
        let _ = writeln!(out, "replay: {}", self.replay);
        out
    }

    /// Writes `report.json` and `report.html` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("report.json"), json)
            .with_context(|| format!("cannot write {}/report.json", dir.display()))?;
        std::fs::write(dir.join("report.html"), self.html()?)
            .with_context(|| format!("cannot write {}/report.html", dir.display()))?;
        Ok(())
    }

    /// One self-contained page: inline SVG plots, the verdict table, the schedule.
    pub fn html(&self) -> anyhow::Result<String> {
        let nodes: usize = self
            .settings
            .get("nodes")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let ok: Vec<(f64, f64)> = self
            .series
            .iter()
            .map(|s| (s.t as f64, s.ok as f64))
            .collect();
        let p50: Vec<(f64, f64)> = self.series.iter().map(|s| (s.t as f64, s.p50_ms)).collect();
        let p99: Vec<(f64, f64)> = self.series.iter().map(|s| (s.t as f64, s.p99_ms)).collect();
        let err: Vec<(f64, f64)> = self
            .series
            .iter()
            .map(|s| (s.t as f64, (s.failed + s.unknown) as f64))
            .collect();
        let plots = [
            (
                "throughput",
                line_chart(
                    "Acknowledged operations per second",
                    &[("ok/s", &ok, BLUE)],
                    &self.faults,
                )?,
            ),
            (
                "latency",
                line_chart(
                    "Latency of acknowledged operations (ms)",
                    &[("p50", &p50, GREEN), ("p99", &p99, RED)],
                    &self.faults,
                )?,
            ),
            (
                "errors",
                line_chart(
                    "Errors per second (failed + unknown)",
                    &[("errors/s", &err, RED)],
                    &self.faults,
                )?,
            ),
            (
                "faults",
                fault_lanes(&self.faults, nodes, self.series.len() as f64)?,
            ),
        ];
        let mut page = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ringctl chaos report</title>\n\
             <style>body{font-family:sans-serif;margin:2em;max-width:1000px}pre{background:#f4f4f4;padding:1em;overflow-x:auto}\
             .clean{color:#060}.failed{color:#a00}figure{margin:1em 0}</style></head><body>\n",
        );
        let (class, word) = if self.clean {
            ("clean", "CLEAN")
        } else {
            ("failed", "FAILED")
        };
        let _ = writeln!(
            page,
            "<h1>ringctl chaos: <span id=\"verdict\" class=\"{class}\">{word}</span></h1>"
        );
        let _ = writeln!(
            page,
            "<h2>Verdict</h2>\n<pre id=\"verdict-table\">{}</pre>",
            escape(&self.table())
        );
        for (id, svg) in plots {
            let _ = writeln!(page, "<figure id=\"plot-{id}\">{svg}</figure>");
        }
        let _ = writeln!(
            page,
            "<h2>Schedule</h2>\n<pre>{}</pre>",
            escape(&self.schedule)
        );
        page.push_str("</body></html>\n");
        Ok(page)
    }
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const WIDTH: u32 = 960;

/// One line of a chart: its legend, its points, its colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// A line chart over the run's seconds with every fault as a shaded band.
fn line_chart(title: &str, lines: &[Line<'_>], faults: &[FaultRecord]) -> anyhow::Result<String> {
    let x_max = lines
        .iter()
        .flat_map(|(_, l, _)| l.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        + 1.0;
    let y_max = lines
        .iter()
        .flat_map(|(_, l, _)| l.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(faults.iter().map(|f| {
                Rectangle::new(
                    [(f.start, 0.0), (f.end, y_max)],
                    color_of(f.kind).mix(0.15).filled(),
                )
            }))
            .map_err(plot_error)?;
        for (name, points, color) in lines {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// One lane per node: each fault a labelled band on the nodes it hit.
fn fault_lanes(faults: &[FaultRecord], nodes: usize, x_max: f64) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = 60 + 30 * nodes as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Faults per node", ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..nodes as f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_labels(nodes)
            .y_label_formatter(&|y| format!("n{}", *y as usize + 1))
            .draw()
            .map_err(plot_error)?;
        for f in faults {
            for name in &f.nodes {
                let lane = name.trim_start_matches('n').parse::<f64>().unwrap_or(1.0) - 1.0;
                let color = color_of(f.kind);
                chart
                    .draw_series([Rectangle::new(
                        [(f.start, lane + 0.1), (f.end, lane + 0.9)],
                        color.mix(0.5).filled(),
                    )])
                    .map_err(plot_error)?;
                chart
                    .draw_series([Text::new(
                        f.label.clone(),
                        (f.start, lane + 0.6),
                        ("sans-serif", 11),
                    )])
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn color_of(kind: FaultKind) -> RGBColor {
    match kind {
        FaultKind::Kill => RGBColor(200, 30, 30),
        FaultKind::Pause => RGBColor(230, 140, 0),
        FaultKind::Partition => RGBColor(120, 60, 200),
        FaultKind::Clock => RGBColor(0, 140, 160),
        FaultKind::SlowDisk => RGBColor(120, 120, 120),
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the report's plots: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start_s: f64, ms: u64, outcome: Outcome, primary: bool, error: Option<&str>) -> Op {
        let start_us = (start_s * 1e6) as u64;
        Op {
            client: 0,
            node: 0,
            kind: OpKind::Put,
            key: "k".into(),
            value: Some(1),
            primary,
            start_us,
            end_us: start_us + ms * 1000,
            outcome,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn seconds_count_outcomes_and_a_fault_recovers_when_throughput_is_back() {
        let mut ops = Vec::new();
        for t in 0..20u64 {
            // 10 ok/s, except 2 ok/s and 5 errors/s during the fault (6..9).
            let (ok, bad) = if (6..9).contains(&t) { (2, 5) } else { (10, 0) };
            for i in 0..ok {
                ops.push(op(
                    t as f64 + i as f64 * 0.05,
                    2 + i,
                    Outcome::Ok,
                    true,
                    None,
                ));
            }
            for i in 0..bad {
                ops.push(op(
                    t as f64 + 0.5 + i as f64 * 0.01,
                    1,
                    Outcome::Unknown,
                    true,
                    Some("timeout"),
                ));
            }
        }
        let s = series(&ops, 20);
        assert_eq!((s[0].ok, s[7].ok, s[7].unknown), (10, 2, 5));
        assert!(s[0].p99_ms >= s[0].p50_ms && s[0].p50_ms >= 2.0);
        let event: Event = "6+3:kill:n2"
            .parse::<super::super::nemesis::Schedule>()
            .unwrap()
            .events[0]
            .clone();
        let r = FaultRecord::new(&event, 6.0, 9.0, &s);
        assert_eq!(r.baseline_ok_per_s, 10.0);
        assert_eq!(r.errors_per_s_during, 5.0);
        assert_eq!(r.errors_per_s_after, 0.0);
        assert_eq!(r.recovery_s, Some(0.0));
        let w = faulted_writes(&ops, &[r]);
        assert_eq!(w["primary"].total, 21);
        assert_eq!(w["primary"].failed, 15);
        assert_eq!(w["primary"].by_error["timeout"], 15);
    }

    #[test]
    fn the_page_is_self_contained_with_four_plots_and_the_verdict() {
        let event: Event = "2+3:partition:n2:in"
            .parse::<super::super::nemesis::Schedule>()
            .unwrap()
            .events[0]
            .clone();
        let ops: Vec<Op> = (0..50)
            .map(|i| op(i as f64 * 0.1, 3, Outcome::Ok, false, None))
            .collect();
        let series = series(&ops, 6);
        let report = Report {
            replay: "ringctl chaos --seed 1".into(),
            settings: [("nodes".to_string(), "3".to_string())].into(),
            schedule: "2.0+3.0:partition:n2:in".into(),
            ops: 50,
            ok: 50,
            failed: 0,
            unknown: 0,
            heal_s: 0.1,
            settle_s: 1.0,
            findings: Findings::default(),
            clean: true,
            faults: vec![FaultRecord::new(&event, 2.0, 5.0, &series)],
            nemesis_notes: vec!["2.0s clock +5000ms n3 not applied: node n3 <down>".into()],
            faulted_writes: BTreeMap::new(),
            series,
        };
        let page = report.html().unwrap();
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("partition-in n2"));
        assert!(page.contains(
            "1 applied; nemesis: 1 (2.0s clock +5000ms n3 not applied: node n3 &lt;down&gt;)"
        ));
        assert!(page.contains("CLEAN"));
        for fetch in ["src=", "href=", "<script", "<link", "@import", "url("] {
            assert!(!page.contains(fetch), "the page fetches something: {fetch}");
        }
    }
}
