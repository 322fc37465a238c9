//! A run's figures as written to JSON and read back by the report, and CPU accounting from
//! `/proc` (the generator's own, and the target processes').

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::drive::{Settings, Tally};
use crate::scenario::Scenario;

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`: 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds (user + system) of this process and of watched ones.
#[derive(Debug, Default)]
pub struct Cpu {
    pub own: f64,
    pub watched: Option<f64>,
}

fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

impl Cpu {
    pub fn sample(watch: &[u32]) -> Self {
        let watched = (!watch.is_empty()).then(|| {
            watch
                .iter()
                .filter_map(|p| cpu_seconds(&p.to_string()))
                .sum()
        });
        Self {
            own: cpu_seconds("self").unwrap_or_default(),
            watched,
        }
    }

    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            own: self.own - before.own,
            watched: self.watched.zip(before.watched).map(|(a, b)| a - b),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One second of the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    pub answered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One run's figures, in milliseconds and per second.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub label: String,
    pub scenario: String,
    pub targets: Vec<String>,
    pub connections: usize,
    /// The offered rate (open model), or none (as fast as answered).
    pub rate: Option<f64>,
    pub seconds: f64,
    pub answered: u64,
    pub failed: u64,
    pub wrong: u64,
    /// Answers per second over the window.
    pub throughput: f64,
    pub latency_ms: Percentiles,
    pub timeline: Vec<Second>,
    /// CPU seconds the generator used in the window (it shares the machine with the target).
    pub generator_cpu_s: f64,
    /// CPU seconds the watched (target) processes used in the window.
    pub target_cpu_s: Option<f64>,
    /// Target CPU per answer, in microseconds.
    pub target_cpu_us_per_answer: Option<f64>,
}

impl Run {
    pub fn new(
        label: Option<String>,
        scenario: Scenario,
        targets: &[String],
        settings: &Settings,
        tally: &Tally,
        cpu: &Cpu,
    ) -> Self {
        let seconds = settings.duration.as_secs_f64();
        let answered = tally.latency.len();
        let scenario = clap::ValueEnum::to_possible_value(&scenario)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        Self {
            label: label.unwrap_or_else(|| scenario.clone()),
            scenario,
            targets: targets.to_vec(),
            connections: settings.connections,
            rate: settings.rate,
            seconds,
            answered,
            failed: tally.failed,
            wrong: tally.wrong,
            throughput: answered as f64 / seconds,
            latency_ms: Percentiles::of(&tally.latency),
            timeline: tally
                .seconds
                .iter()
                .map(|h| Second {
                    answered: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.50)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                })
                .collect(),
            generator_cpu_s: cpu.own,
            target_cpu_s: cpu.watched,
            target_cpu_us_per_answer: cpu
                .watched
                .filter(|_| answered > 0)
                .map(|s| s * 1e6 / answered as f64),
        }
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let l = &self.latency_ms;
        let target = self
            .target_cpu_us_per_answer
            .map(|us| {
                format!(
                    "; target CPU {:.2} cores, {us:.1} µs/answer",
                    self.target_cpu_s.unwrap_or_default() / self.seconds
                )
            })
            .unwrap_or_default();
        format!(
            "{}: {:.0} answers/s over {:.0} s ({} connections{}); latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}; {} failed, {} wrong; generator CPU {:.2} cores{target}",
            self.label,
            self.throughput,
            self.seconds,
            self.connections,
            self.rate
                .map(|r| format!(", offered {r:.0}/s"))
                .unwrap_or_default(),
            l.p50,
            l.p90,
            l.p99,
            l.max,
            self.failed,
            self.wrong,
            self.generator_cpu_s / self.seconds,
        )
    }
}
