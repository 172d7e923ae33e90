//! Findings over time as a stacked bar chart, drawn as SVG on the server:
//! one bar per bucket, one segment per agent, a legend that names each
//! agent beside its colour, and the same numbers as a table for screen
//! readers and for anyone who wants the figures.

use maud::{html, Markup};

/// The agents in the order their segments stack (bottom first); an agent
/// not listed is drawn as `other`.
pub const SERIES: [&str; 4] = ["security", "wifi", "network", "system"];

/// The range a chart covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// 24 bars of an hour.
    Day,
    /// 28 bars of six hours.
    Week,
}

impl Range {
    /// `24h` or `7d`, as in the page's query string.
    pub fn parse(v: Option<&str>) -> Result<Range, String> {
        match v {
            None | Some("") | Some("24h") => Ok(Range::Day),
            Some("7d") => Ok(Range::Week),
            Some(other) => Err(format!("range {other:?} is not 24h or 7d")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
        }
    }

    /// (bars, hours per bar).
    fn shape(self) -> (i64, i64) {
        match self {
            Range::Day => (24, 1),
            Range::Week => (28, 6),
        }
    }

    /// The first hour (unix ms / 3,600,000) a chart ending at `now_ms` shows.
    pub fn from_hour(self, now_ms: i64) -> i64 {
        let (bars, per) = self.shape();
        let end = now_ms / 3_600_000 / per * per + per;
        end - bars * per
    }
}

/// Counts per bar and series.
#[derive(Debug, PartialEq, Eq)]
pub struct Bars {
    /// First hour of each bar.
    pub starts: Vec<i64>,
    /// `counts[bar][series]`; the last series is `other`.
    pub counts: Vec<[i64; SERIES.len() + 1]>,
}

/// Buckets `(hour, agent, n)` rows into the bars of `range` ending at `now_ms`.
pub fn bucket(rows: &[(i64, String, i64)], range: Range, now_ms: i64) -> Bars {
    let (bars, per) = range.shape();
    let from = range.from_hour(now_ms);
    let starts: Vec<i64> = (0..bars).map(|i| from + i * per).collect();
    let mut counts = vec![[0i64; SERIES.len() + 1]; bars as usize];
    for (hour, agent, n) in rows {
        let bar = (hour - from).div_euclid(per);
        if !(0..bars).contains(&bar) {
            continue;
        }
        let s = SERIES.iter().position(|a| a == agent).unwrap_or(SERIES.len());
        counts[bar as usize][s] += n;
    }
    Bars { starts, counts }
}

/// The chart of `bars`, titled `label` for assistive technology.
pub fn stacked_bars(bars: &Bars, range: Range, label: &str) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 36.0;
    const BOTTOM: f64 = 20.0;
    let n = bars.counts.len().max(1) as f64;
    let max = bars.counts.iter().map(|c| c.iter().sum::<i64>()).max().unwrap_or(0);
    let top = nice_ceiling(max);
    let slot = (W - LEFT) / n;
    let bar_w = (slot * 0.8).max(1.0);
    let y = |v: i64| (H - BOTTOM) - (v as f64 / top as f64) * (H - BOTTOM - 8.0);
    let names: Vec<&str> = SERIES.iter().copied().chain(["other"]).collect();
    let total: i64 = bars.counts.iter().flatten().sum();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ (label) ": " (total) " findings" } {
                title { (label) }
                @for tick in [0, top / 2, top] {
                    line x1=(LEFT) x2=(W) y1=(y(tick)) y2=(y(tick)) {}
                    text x=(LEFT - 4.0) y=(y(tick) + 4.0) text-anchor="end" { (tick) }
                }
                @for (i, c) in bars.counts.iter().enumerate() {
                    @let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
                    g {
                        title { (bar_label(bars.starts[i], range)) ": " (c.iter().sum::<i64>()) " findings" }
                        @for (s, base, v) in stack(c) {
                            rect class={ "s-" (names[s]) } x=(x) width=(bar_w) y=(y(base + v)) height=((y(base) - y(base + v)).max(1.0)) {}
                        }
                    }
                    @if i % (bars.counts.len() / 6).max(1) == 0 {
                        text x=(x + bar_w / 2.0) y=(H - 5.0) text-anchor="middle" { (axis_label(bars.starts[i], range)) }
                    }
                }
            }
            ul.legend {
                @for (s, name) in names.iter().enumerate() {
                    @let sum: i64 = bars.counts.iter().map(|c| c[s]).sum();
                    @if sum > 0 || s < SERIES.len() {
                        li { i class={ "s-" (name) } aria-hidden="true" {} (name) " " span.muted { (sum) } }
                    }
                }
            }
            details {
                summary { "As a table" }
                table {
                    thead { tr { th { "From (UTC)" } @for name in &names { th.num { (name) } } } }
                    tbody {
                        @for (i, c) in bars.counts.iter().enumerate() {
                            tr {
                                td data-label="From" { (bar_label(bars.starts[i], range)) }
                                @for (s, v) in c.iter().enumerate() { td.num data-label=(names[s]) { (v) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The non-empty segments of one bar, bottom first: (series, base, count).
fn stack(counts: &[i64]) -> Vec<(usize, i64, i64)> {
    let mut base = 0;
    let mut out = Vec::new();
    for (s, &v) in counts.iter().enumerate() {
        if v > 0 {
            out.push((s, base, v));
            base += v;
        }
    }
    out
}

/// 1, 2 or 5 times a power of ten, at least `max` (and at least 4).
fn nice_ceiling(max: i64) -> i64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max.max(4) {
                return m * step;
            }
        }
        step *= 10;
    }
}

fn bar_label(hour: i64, range: Range) -> String {
    let iso = crate::http::rfc3339(hour * 3_600_000);
    match range {
        Range::Day => iso.get(11..16).unwrap_or_default().to_owned(),
        Range::Week => format!("{} {}", iso.get(5..10).unwrap_or_default(), iso.get(11..16).unwrap_or_default()),
    }
}

fn axis_label(hour: i64, range: Range) -> String {
    let iso = crate::http::rfc3339(hour * 3_600_000);
    match range {
        Range::Day => iso.get(11..16).unwrap_or_default().to_owned(),
        Range::Week => iso.get(5..10).unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000; // 2026-05-28T20:26:40Z

    #[test]
    fn rows_land_in_their_bar_and_series() {
        let h = NOW / 3_600_000;
        let rows = vec![
            (h, "security".to_owned(), 3),
            (h, "wifi".to_owned(), 2),
            (h - 1, "dns".to_owned(), 1),
            (h - 30, "security".to_owned(), 9),
        ];
        let day = bucket(&rows, Range::Day, NOW);
        assert_eq!(day.counts.len(), 24);
        assert_eq!(day.counts[23], [3, 2, 0, 0, 0], "the current hour is the last bar");
        assert_eq!(day.counts[22][4], 1, "an unknown agent is other");
        assert_eq!(day.counts.iter().flatten().sum::<i64>(), 6, "older than a day is left out");
        let week = bucket(&rows, Range::Week, NOW);
        assert_eq!(week.counts.len(), 28);
        assert_eq!(week.counts.iter().flatten().sum::<i64>(), 15);
    }

    #[test]
    fn the_chart_names_its_numbers() {
        let h = NOW / 3_600_000;
        let bars = bucket(&[(h, "security".to_owned(), 7)], Range::Day, NOW);
        let svg = stacked_bars(&bars, Range::Day, "Findings").into_string();
        assert!(svg.contains("aria-label=\"Findings: 7 findings\""), "{svg}");
        assert!(svg.contains("class=\"s-security\""), "{svg}");
        assert!(svg.contains("<td class=\"num\" data-label=\"security\">7</td>"), "{svg}");
        assert_eq!(Range::parse(Some("1y")).unwrap_err(), "range \"1y\" is not 24h or 7d");
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(0), 5);
        assert_eq!(nice_ceiling(120), 200);
    }
}
