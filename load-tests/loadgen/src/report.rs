//! The report: a Markdown table of the runs, each set beside the reference targets measured in
//! the same session (the bare sign/verify endpoints and the seed service), and SVG plots drawn
//! with `plotters`: throughput per run, p50/p99 latency per second, and the propagation
//! probe's delays as a histogram.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::record::Run;

/// The reference runs for a scenario: what the bare endpoint and the seed service do of the
/// same kind of work.
fn references(scenario: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match scenario {
        "issue" => Some((&["sign"], &["seed-login"])),
        "validate" | "introspect" | "resource-data" => {
            Some((&["verify", "verify-issued"], &["seed-data"]))
        }
        _ => None,
    }
}

/// Whether a scenario is one of the comparison targets'.
fn references_of_kind(scenario: &str) -> bool {
    ["issue", "validate"]
        .into_iter()
        .filter_map(references)
        .any(|(bare, seed)| bare.contains(&scenario) || seed.contains(&scenario))
}

/// `runs[i]` against the reference of one of `scenarios` measured last before it (the nearest
/// in time, under the same background: the cluster phases measure the bare endpoint again
/// beside the stack), or else the first one measured after it.
fn ratio(i: usize, runs: &[Run], scenarios: &[&str]) -> String {
    let usable = |r: &&Run| scenarios.contains(&r.scenario.as_str()) && r.throughput > 0.0;
    let (before, after) = runs.split_at(i);
    before
        .iter()
        .rev()
        .find(usable)
        .or_else(|| after.iter().find(usable))
        .map(|r| format!("{:.2}× ({})", runs[i].throughput / r.throughput, r.label))
        .unwrap_or_else(|| "–".into())
}

fn table(runs: &[Run]) -> String {
    let mut md = String::from(
        "| run | answers/s | p50 ms | p99 ms | max ms | failed | wrong | generator cores | target µs CPU/answer | vs bare | vs seed |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (i, run) in runs.iter().enumerate() {
        let (bare, seed) = references(&run.scenario)
            .map(|(b, s)| (ratio(i, runs, b), ratio(i, runs, s)))
            .unwrap_or_else(|| ("–".into(), "–".into()));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} | {} | {bare} | {seed} |",
            run.label,
            run.throughput,
            run.latency_ms.p50,
            run.latency_ms.p99,
            run.latency_ms.max,
            run.failed,
            run.wrong,
            run.generator_cpu_s / run.seconds,
            run.target_cpu_us_per_answer
                .map_or_else(|| "–".into(), |us| format!("{us:.1}")),
        );
    }
    md
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

fn throughput(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 60 + 34 * runs.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let most = runs.iter().map(|r| r.throughput).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("answers per second", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..most * 1.1, (0..runs.len()).into_segmented())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(runs.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => runs.get(*i).map(|r| r.label.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(
            Histogram::horizontal(&chart)
                .style_func(|i, _| {
                    // The comparison targets in grey, the token service in blue.
                    let reference = match i {
                        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => runs
                            .get(*i)
                            .is_some_and(|r| references_of_kind(&r.scenario)),
                        SegmentValue::Last => false,
                    };
                    if reference {
                        BLACK.mix(0.35).filled()
                    } else {
                        BLUE.mix(0.6).filled()
                    }
                })
                .margin(6)
                .data(runs.iter().enumerate().map(|(i, r)| (i, r.throughput))),
        )
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn latency(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let seconds = runs.iter().map(|r| r.timeline.len()).max().unwrap_or(1);
    let highest = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|s| s.p99_ms))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("p99 latency in each second of each run", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0..seconds, 0.0..highest * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("ms")
        .draw()
        .map_err(plot_error)?;
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                run.timeline.iter().enumerate().map(|(s, x)| (s, x.p99_ms)),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn propagation(path: &Path, samples: &[f64]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let widest = samples.iter().copied().fold(1.0, f64::max).ceil() as u32 + 1;
    let mut counts = vec![0u32; widest as usize + 1];
    for s in samples {
        counts[(*s as usize).min(widest as usize)] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "revoke call started → refused by every other node (1 ms bins)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d((0..widest).into_segmented(), 0..tallest + 1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("ms")
        .y_desc("samples")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RED.mix(0.6).filled())
                .margin(1)
                .data(samples.iter().map(|s| (*s as u32, 1))),
        )
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Writes `report.md`, `throughput.svg`, `latency.svg` and (with a probe) `propagation.svg`;
/// `strict`: then fails when any answer failed or was wrong.
pub fn write(
    out: &Path,
    paths: &[std::path::PathBuf],
    probe: Option<&Path>,
    note: Option<&str>,
    strict: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let runs = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            serde_json::from_str(&text).with_context(|| p.display().to_string())
        })
        .collect::<anyhow::Result<Vec<Run>>>()?;
    let mut md = String::from("# Load-test report\n\n");
    if !runs.is_empty() {
        md.push_str(&table(&runs));
        throughput(&out.join("throughput.svg"), &runs)?;
        latency(&out.join("latency.svg"), &runs)?;
        md.push_str("\n![throughput](throughput.svg)\n\n![latency](latency.svg)\n");
    }
    if let Some(probe) = probe {
        let figures: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(probe)?)?;
        let samples: Vec<f64> = figures["rejected_ms"]
            .as_array()
            .context("the probe's JSON has no rejected_ms samples")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        propagation(&out.join("propagation.svg"), &samples)?;
        let p = &figures["rejected_everywhere_after_revoke"];
        let _ = writeln!(
            md,
            "\nRevocation propagation, {} samples: refused everywhere p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms.\n\n![propagation](propagation.svg)",
            samples.len(),
            p["p50_ms"].as_f64().unwrap_or_default(),
            p["p90_ms"].as_f64().unwrap_or_default(),
            p["p99_ms"].as_f64().unwrap_or_default(),
            p["max_ms"].as_f64().unwrap_or_default(),
        );
    }
    if let Some(note) = note {
        let _ = writeln!(md, "\n{note}");
    }
    std::fs::write(out.join("report.md"), md)?;
    let bad: Vec<String> = runs
        .iter()
        .filter(|r| r.failed > 0 || r.wrong > 0)
        .map(|r| format!("{} ({} failed, {} wrong)", r.label, r.failed, r.wrong))
        .collect();
    anyhow::ensure!(
        !strict || bad.is_empty(),
        "answers failed or wrong in: {}",
        bad.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, scenario: &str, throughput: f64) -> Run {
        serde_json::from_value(serde_json::json!({
            "label": label, "scenario": scenario, "targets": [], "connections": 1,
            "rate": null, "seconds": 1.0, "answered": 1, "failed": 0, "wrong": 0,
            "throughput": throughput,
            "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "p999": 1.0, "max": 1.0, "mean": 1.0},
            "timeline": [], "generator_cpu_s": 0.0, "target_cpu_s": null,
            "target_cpu_us_per_answer": null,
        }))
        .unwrap()
    }

    #[test]
    fn a_run_is_compared_with_the_reference_measured_last_before_it() {
        let runs = [
            run("embedded-validate", "validate", 50.0),
            run("bare-verify", "verify", 100.0),
            run("embedded-again", "validate", 90.0),
            run("bare-verify-cluster", "verify-issued", 80.0),
            run("cluster-validate", "validate", 76.0),
        ];
        let verify: &[&str] = &["verify", "verify-issued"];
        // None before it: the first one after.
        assert_eq!(ratio(0, &runs, verify), "0.50× (bare-verify)");
        assert_eq!(ratio(2, &runs, verify), "0.90× (bare-verify)");
        assert_eq!(ratio(4, &runs, verify), "0.95× (bare-verify-cluster)");
        assert_eq!(ratio(4, &runs, &["seed-data"]), "–");
    }
}
