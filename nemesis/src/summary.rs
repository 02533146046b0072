//! The run's figures from the load generator's per-second series and the
//! fault timeline: longest unavailability per fault kind, throughput
//! during faults against without.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::Kind;

/// A fault's effect is looked for until this long after it healed
/// (elections, a restarted node catching up).
pub const AFTER_HEAL_S: usize = 10;

/// The first seconds of the load (connections, warm-up) are left out of
/// the throughput comparison.
pub const WARM_UP_S: usize = 2;

/// One fault as it ran, in whole seconds from the start of the load.
#[derive(Debug, Clone)]
pub struct Ran {
    pub kind: Kind,
    pub start_s: usize,
    pub end_s: usize,
}

/// Per kind: how many ran, and the longest run of seconds with nothing
/// acknowledged that overlaps one of them (or the time after it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindFigures {
    pub count: usize,
    pub longest_unavailable_s: usize,
}

/// Throughput in acknowledged transactions per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throughput {
    pub during_faults: f64,
    pub without: f64,
}

/// Runs of zeros in `series`: (first second, length).
fn zero_runs(series: &[u64]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &v) in series.iter().enumerate() {
        match (v == 0, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, series.len() - s));
    }
    runs
}

pub fn by_kind(series: &[u64], ran: &[Ran]) -> BTreeMap<Kind, KindFigures> {
    let runs = zero_runs(series);
    let mut out: BTreeMap<Kind, KindFigures> = BTreeMap::new();
    for r in ran {
        let figures = out.entry(r.kind).or_default();
        figures.count += 1;
        let window = r.start_s..=r.end_s + AFTER_HEAL_S;
        for &(start, len) in &runs {
            let end = start + len - 1;
            if start <= *window.end() && end >= *window.start() {
                figures.longest_unavailable_s = figures.longest_unavailable_s.max(len);
            }
        }
    }
    out
}

pub fn throughput(series: &[u64], ran: &[Ran]) -> Throughput {
    let mut during = (0u64, 0u64);
    let mut without = (0u64, 0u64);
    for (s, &v) in series.iter().enumerate().skip(WARM_UP_S) {
        let in_fault = ran.iter().any(|r| s >= r.start_s && s <= r.end_s);
        let bucket = if in_fault { &mut during } else { &mut without };
        bucket.0 += v;
        bucket.1 += 1;
    }
    let mean = |(sum, n): (u64, u64)| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
    Throughput {
        during_faults: mean(during),
        without: mean(without),
    }
}

/// The summary table.
pub fn render(series: &[u64], ran: &[Ran]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "faults by kind (longest run of seconds with nothing acknowledged, during the fault or {AFTER_HEAL_S} s after it):");
    for (kind, f) in by_kind(series, ran) {
        let _ = writeln!(
            text,
            "  {:<12} {:>3} ran, longest unavailability {} s",
            kind.name(),
            f.count,
            f.longest_unavailable_s
        );
    }
    let t = throughput(series, ran);
    let _ = writeln!(
        text,
        "throughput: {:.0} tx/s acknowledged during faults, {:.0} tx/s without",
        t.during_faults, t.without
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_near_a_fault_counts_for_its_kind() {
        let series = [
            5, 5, 5, 0, 0, 0, 5, 5, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0,
        ];
        let ran = [
            Ran {
                kind: Kind::Kill,
                start_s: 2,
                end_s: 4,
            },
            Ran {
                kind: Kind::Kill,
                start_s: 7,
                end_s: 8,
            },
            Ran {
                kind: Kind::Stop,
                start_s: 9,
                end_s: 9,
            },
        ];
        let figures = by_kind(&series, &ran);
        assert_eq!(
            figures[&Kind::Kill],
            KindFigures {
                count: 2,
                longest_unavailable_s: 3
            }
        );
        // The stop's window (9..=19) holds no zero: 8 is before it, 21 after.
        assert_eq!(figures[&Kind::Stop].longest_unavailable_s, 0);
        let t = throughput(&series, &ran);
        assert!(t.during_faults < t.without);
    }

    #[test]
    fn zero_runs_include_a_trailing_one() {
        assert_eq!(zero_runs(&[0, 1, 0, 0]), vec![(0, 1), (2, 2)]);
        assert!(zero_runs(&[]).is_empty());
    }
}
