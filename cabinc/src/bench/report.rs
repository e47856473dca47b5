//! The results of `cabinc bench`: the printed table, `bench.json` and `bench.svg`.
//! The SVG is written by hand: one group per item (entry and score) with a bar per backend side
//! by side, on a log axis of the confined/native ratio with ticks, each bar drawn from 1.0 (native
//! speed) to its median, a whisker over the spread of the runs, and a marker where a bar leaves
//! the axis.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::geomean;

/// One measured score on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    /// `entry[/variant]: score`.
    pub name: String,
    /// Catalog entry and variant.
    pub entry: String,
    /// Score name.
    pub score: String,
    /// Backend of the confined runs.
    pub backend: String,
    /// Median native value.
    pub native: f64,
    /// Median confined value.
    pub confined: f64,
    /// Unit of both values.
    pub unit: String,
    /// Whether bigger values are better.
    pub higher_is_better: bool,
    /// Confined relative to native, higher is better (1.0 = same speed).
    pub ratio: f64,
    /// Number of runs of each side.
    pub runs: usize,
    /// The spread of the runs: the lowest and highest ratio of one confined run to the native
    /// median (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_range: Option<(f64, f64)>,
}

/// Machine description.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease"),
            hostname: read("/proc/sys/kernel/hostname"),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Report format version.
    pub format: u32,
    /// Every item.
    pub items: Vec<ItemResult>,
    /// Geometric mean of the ratios per backend.
    pub geomean: BTreeMap<String, f64>,
    /// Geometric mean per backend and entry.
    pub geomean_by_entry: BTreeMap<String, BTreeMap<String, f64>>,
    /// Lowest ratio per backend.
    pub min_ratio: BTreeMap<String, f64>,
    /// Runs that failed.
    pub failures: Vec<String>,
    /// The machine.
    pub machine: Machine,
    /// UTC date and time of the run (RFC 3339).
    pub date: String,
    /// Runs per side.
    pub runs: usize,
    /// The machine's load: `--load` hogs and the load averages.
    pub load: super::load::Load,
}

impl Report {
    /// Builds a report, computing the summaries.
    pub fn new(
        items: Vec<ItemResult>,
        failures: Vec<String>,
        machine: Machine,
        date: String,
        runs: usize,
    ) -> Report {
        let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut per_entry: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
        for i in &items {
            per.entry(i.backend.clone()).or_default().push(i.ratio);
            per_entry.entry(i.backend.clone()).or_default().entry(i.entry.clone()).or_default().push(i.ratio);
        }
        let geomean_map = per.iter().filter_map(|(b, v)| geomean(v).map(|g| (b.clone(), g))).collect();
        let min_ratio = per
            .iter()
            .filter_map(|(b, v)| v.iter().copied().min_by(f64::total_cmp).map(|m| (b.clone(), m)))
            .collect();
        let geomean_by_entry = per_entry
            .into_iter()
            .map(|(b, m)| (b, m.into_iter().filter_map(|(e, v)| geomean(&v).map(|g| (e, g))).collect()))
            .collect();
        Report {
            format: 1,
            items,
            geomean: geomean_map,
            geomean_by_entry,
            min_ratio,
            failures,
            machine,
            date,
            runs,
            load: super::load::Load::default(),
        }
    }

    /// The report with the run's load recorded.
    pub fn with_load(mut self, load: super::load::Load) -> Report {
        self.load = load;
        self
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let w = self.items.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            s,
            "{:<w$}  {:<11}  {:>14}  {:>14}  {:<8}  {:>6}",
            "item", "backend", "native", "confined", "unit", "ratio"
        );
        for i in &self.items {
            let _ = writeln!(
                s,
                "{:<w$}  {:<11}  {:>14}  {:>14}  {:<8}  {:>6.3}{}",
                i.name,
                i.backend,
                num(i.native),
                num(i.confined),
                i.unit,
                i.ratio,
                if i.ratio < 0.95 { "  <0.95" } else { "" }
            );
        }
        let l = &self.load;
        let _ = writeln!(
            s,
            "load: {} CPU hog(s) during every run; load average {:.2} {:.2} {:.2} at the start, {:.2} {:.2} {:.2} at the end",
            l.hogs,
            l.loadavg_start[0],
            l.loadavg_start[1],
            l.loadavg_start[2],
            l.loadavg_end[0],
            l.loadavg_end[1],
            l.loadavg_end[2]
        );
        for (b, g) in &self.geomean {
            let _ = writeln!(
                s,
                "geometric mean ({b}): {g:.3}   lowest: {:.3}",
                self.min_ratio.get(b).copied().unwrap_or(f64::NAN)
            );
            if let Some(m) = self.geomean_by_entry.get(b) {
                for (e, g) in m {
                    let _ = writeln!(s, "    {e}: {g:.3}");
                }
            }
        }
        for f in &self.failures {
            let _ = writeln!(s, "FAILED: {f}");
        }
        s
    }

    /// The bar chart.
    pub fn svg(&self) -> String {
        svg(self)
    }
}

fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.5}")
    }
}

/// Escapes text for XML content and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

const COLOURS: &[&str] = &["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];

/// The log axis of the plot: ratios from `lo` to `hi` (powers of ten around the data, at most
/// 1e-3 to 1e3: a bar beyond is clipped and marked).
#[derive(Debug, Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
    x0: f64,
    width: f64,
}

impl LogAxis {
    fn new(ratios: impl Iterator<Item = f64>, x0: f64, width: f64) -> LogAxis {
        let (mut lo, mut hi) = (1.0f64, 1.0f64);
        for r in ratios.filter(|r| r.is_finite() && *r > 0.0) {
            lo = lo.min(r);
            hi = hi.max(r);
        }
        // Whole decades, at least 0.1 .. 10, at most 1e-3 .. 1e3.
        let lo = 10f64.powf(lo.log10().floor().clamp(-3.0, -1.0));
        let hi = 10f64.powf(hi.log10().ceil().clamp(1.0, 3.0));
        LogAxis { lo, hi, x0, width }
    }

    /// The x of a ratio, clamped to the axis; and whether it was clamped.
    fn x(&self, r: f64) -> (f64, bool) {
        let clipped = !(r >= self.lo && r <= self.hi);
        let r = if r.is_finite() && r > 0.0 { r.clamp(self.lo, self.hi) } else { self.lo };
        let t = (r.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        (self.x0 + t * self.width, clipped)
    }

    /// Ticks: 1, 2 and 5 times each power of ten on the axis (labels on the powers of ten).
    fn ticks(&self) -> Vec<(f64, bool)> {
        let mut out = Vec::new();
        let (a, b) = (self.lo.log10().round() as i32, self.hi.log10().round() as i32);
        for e in a..=b {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powi(e);
                if v >= self.lo * 0.999 && v <= self.hi * 1.001 {
                    out.push((v, m == 1.0));
                }
            }
        }
        out
    }
}

fn tick_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}×")
    } else {
        let digits = (-v.log10()).ceil().max(0.0) as usize;
        format!("{v:.digits$}×")
    }
}

fn svg(r: &Report) -> String {
    // Groups: one per item name (entry and score), in first-seen order; bars per backend.
    let mut groups: Vec<(&str, Vec<&ItemResult>)> = Vec::new();
    for i in &r.items {
        match groups.iter_mut().find(|(n, _)| *n == i.name) {
            Some((_, v)) => v.push(i),
            None => groups.push((i.name.as_str(), vec![i])),
        }
    }
    let backends: Vec<&String> = r.geomean.keys().collect();
    let colour =
        |b: &str| COLOURS[backends.iter().position(|x| x.as_str() == b).unwrap_or(0) % COLOURS.len()];
    let bar_h = 12.0;
    let group_gap = 10.0;
    let label_w = (7.0 * groups.iter().map(|(n, _)| n.len()).max().unwrap_or(10) as f64).clamp(120.0, 460.0);
    let chart_w = 560.0;
    let top = 78.0;
    let axis = LogAxis::new(
        r.items.iter().flat_map(|i| {
            let (a, b) = i.ratio_range.unwrap_or((i.ratio, i.ratio));
            [i.ratio, a, b]
        }),
        label_w + 10.0,
        chart_w,
    );
    let rows: usize = groups.iter().map(|(_, v)| v.len()).sum();
    let bottom = top + bar_h * rows as f64 + group_gap * groups.len() as f64;
    let height = bottom + 50.0;
    let width = label_w + chart_w + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#);
    let title = "Confined speed relative to native: higher is better (1× = native speed, right of the line is faster)";
    let _ = writeln!(s, r#"<text class="title" x="10" y="18" font-size="14">{}</text>"#, xml_escape(title));
    let sub = format!(
        "median of {} run(s) per side; whiskers: spread of the runs; log axis; {} — {}",
        r.runs, r.machine.cpu, r.date
    );
    let _ = writeln!(s, r##"<text x="10" y="34" fill="#555">{}</text>"##, xml_escape(&sub));
    let mut legend = 10.0;
    for b in &backends {
        let g = r.geomean.get(*b).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            r#"<g class="legend"><rect x="{legend:.0}" y="44" width="10" height="10" fill="{}"/><text x="{:.0}" y="53">{} (geomean {g:.3})</text></g>"#,
            colour(b),
            legend + 14.0,
            xml_escape(b)
        );
        legend += 200.0;
    }
    // The axis: grid lines and tick labels at the bottom, a solid line at 1×.
    let _ = writeln!(s, r#"<g class="axis" data-scale="log" data-lo="{}" data-hi="{}">"#, axis.lo, axis.hi);
    for (v, major) in axis.ticks() {
        let (x, _) = axis.x(v);
        let _ = writeln!(
            s,
            r##"<line class="tick" data-value="{v}" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="1"/>"##,
            top - 6.0,
            bottom + 4.0,
            if major { "#bbb" } else { "#e4e4e4" }
        );
        if major {
            let _ = writeln!(
                s,
                r#"<text class="tick-label" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 17.0,
                tick_label(v)
            );
        }
    }
    let (x1, _) = axis.x(1.0);
    let _ = writeln!(
        s,
        r#"<line class="native" x1="{x1:.1}" y1="{:.1}" x2="{x1:.1}" y2="{:.1}" stroke="black" stroke-width="1.5"/>"#,
        top - 8.0,
        bottom + 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">confined / native (log scale)</text></g>"#,
        axis.x0 + chart_w / 2.0,
        bottom + 33.0
    );
    let mut y = top;
    for (name, items) in &groups {
        let _ = writeln!(s, r#"<g class="group" data-item="{}">"#, xml_escape(name));
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_w,
            y + bar_h * items.len() as f64 / 2.0 + 4.0,
            xml_escape(name)
        );
        for i in items {
            let (x, clipped) = axis.x(i.ratio);
            let (left, right) = if x < x1 { (x, x1) } else { (x1, x) };
            let tip = format!(
                "{} [{}]: native {} {u}, confined {} {u}, ratio {:.3}{}",
                i.name,
                i.backend,
                num(i.native),
                num(i.confined),
                i.ratio,
                i.ratio_range.map_or(String::new(), |(a, b)| format!(" (runs {a:.3} .. {b:.3})")),
                u = i.unit
            );
            let _ = writeln!(
                s,
                r#"<rect class="bar" data-backend="{}" data-ratio="{}" x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                xml_escape(&i.backend),
                i.ratio,
                y + 1.0,
                (right - left).max(0.5),
                bar_h - 2.0,
                colour(&i.backend),
                xml_escape(&tip)
            );
            if let Some((a, b)) = i.ratio_range {
                let ((xa, _), (xb, _)) = (axis.x(a), axis.x(b));
                let mid = y + bar_h / 2.0;
                let _ = writeln!(
                    s,
                    r#"<path class="spread" d="M{xa:.1} {:.1}V{:.1}M{xa:.1} {mid:.1}H{xb:.1}M{xb:.1} {:.1}V{:.1}" stroke="black" stroke-width="1" fill="none"/>"#,
                    mid - 3.0,
                    mid + 3.0,
                    mid - 3.0,
                    mid + 3.0
                );
            }
            if clipped {
                // The bar leaves the axis: an arrowhead at its end says so, the label the value.
                let d = if x < x1 { -1.0 } else { 1.0 };
                let _ = writeln!(
                    s,
                    r#"<path class="clipped" d="M{x:.1} {:.1}L{:.1} {:.1}L{x:.1} {:.1}Z" fill="black"><title>beyond the axis</title></path>"#,
                    y + 1.0,
                    x + d * 6.0,
                    y + bar_h / 2.0,
                    y + bar_h - 1.0
                );
            }
            // The value beyond the bar and its whisker, so neither hides it.
            let (lo, hi) = i.ratio_range.map_or((x, x), |(a, b)| (axis.x(a).0.min(x), axis.x(b).0.max(x)));
            let (lx, anchor) =
                if x < x1 { (lo.min(left) - 8.0, "end") } else { (hi.max(right) + 8.0, "start") };
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{:.1}" text-anchor="{anchor}" font-size="10">{:.3}{}</text>"#,
                y + bar_h - 2.0,
                i.ratio,
                if clipped { " (off scale)" } else { "" }
            );
            y += bar_h;
        }
        let _ = writeln!(s, "</g>");
        y += group_gap;
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mk = |name: &str, backend: &str, ratio: f64| ItemResult {
            name: format!("e: {name}"),
            entry: "e".into(),
            score: name.into(),
            backend: backend.into(),
            native: 100.0,
            confined: 100.0 * ratio,
            unit: "MB/s".into(),
            higher_is_better: true,
            ratio,
            runs: 3,
            ratio_range: Some((ratio * 0.9, ratio * 1.1)),
        };
        let items =
            vec![mk("AES<&>", "passthrough", 0.5), mk("SHA\"256'", "passthrough", 2.0), mk("x", "kvm", 0.9)];
        let m = Machine { cpu: "Test CPU".into(), cpus: 2, kernel: "6".into(), hostname: "h".into() };
        Report::new(items, vec!["boom".into()], m, "2026-01-01T00:00:00Z".into(), 3)
    }

    #[test]
    fn json_shape() {
        let r = sample();
        let v = serde_json::to_value(&r).expect("json");
        let items = v["items"].as_array().expect("items");
        assert_eq!(items.len(), 3);
        for i in items {
            for k in ["name", "backend", "native", "confined", "ratio"] {
                assert!(!i[k].is_null(), "missing {k}");
            }
        }
        assert!((v["geomean"]["passthrough"].as_f64().expect("g") - 1.0).abs() < 1e-12);
        assert!((v["geomean"]["kvm"].as_f64().expect("g") - 0.9).abs() < 1e-12);
        assert_eq!(v["min_ratio"]["passthrough"].as_f64(), Some(0.5));
        assert!(v["machine"]["cpu"].is_string());
        assert!(v["date"].is_string());
    }

    /// One start tag of the SVG: its name, attributes, text up to the next tag, and the
    /// `data-item` of the group it is in.
    #[derive(Debug)]
    struct Tag {
        name: String,
        attrs: BTreeMap<String, String>,
        text: String,
        group: Option<String>,
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// A small XML parser for what `svg` writes: checks that tags balance, quotes pair and
    /// every entity is one we wrote, and returns the start tags in order.
    fn parse(s: &str) -> Vec<Tag> {
        let body = s.split_once("?>").expect("xml decl").1;
        let mut stack: Vec<(String, Option<String>)> = Vec::new();
        let mut tags: Vec<Tag> = Vec::new();
        let mut rest = body;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            assert!(!text.contains('>'), "stray > in {text:?}");
            for (k, _) in text.match_indices('&') {
                let ent = &text[k..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)),
                    "bad entity in {text:?}"
                );
            }
            if let Some(t) = tags.last_mut() {
                if t.text.is_empty() {
                    t.text = unescape(text.trim());
                }
            }
            let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "nested < in tag {tag:?}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().map(|t| t.0).as_deref(), Some(name.trim()), "mismatched </{name}>");
            } else {
                let self_closing = tag.ends_with('/');
                let inner = tag.trim_end_matches('/');
                let (name, mut a) = inner.split_once(' ').unwrap_or((inner, ""));
                let mut attrs = BTreeMap::new();
                while let Some((k, v)) = a.split_once("=\"") {
                    let (v, r) = v.split_once('"').expect("attribute value");
                    attrs.insert(k.trim().to_string(), unescape(v));
                    a = r;
                }
                let mut group = stack.iter().rev().find_map(|t| t.1.clone());
                if name == "g" && attrs.get("class").map(String::as_str) == Some("group") {
                    group = attrs.get("data-item").cloned();
                }
                tags.push(Tag { name: name.to_string(), attrs, text: String::new(), group: group.clone() });
                if !self_closing {
                    stack.push((name.to_string(), group));
                }
            }
            rest = &rest[gt + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        tags
    }

    fn class<'a>(tags: &'a [Tag], c: &str) -> Vec<&'a Tag> {
        tags.iter().filter(|t| t.attrs.get("class").map(String::as_str) == Some(c)).collect()
    }

    fn f(t: &Tag, k: &str) -> f64 {
        t.attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} of {t:?}"))
    }

    /// Parses the rendered SVG: a log axis with ticks, one group per item with a bar per
    /// backend side by side, a whisker per bar, a marker on the clipped bar, a title that says
    /// which way is better.
    #[test]
    fn svg_has_a_log_axis_groups_spread_and_clip_markers() {
        let mut r = sample();
        let mut extra = r.items[2].clone();
        extra.backend = "passthrough".into();
        extra.ratio = 5000.0;
        extra.ratio_range = None;
        r.items.push(extra);
        let r = Report::new(r.items, r.failures, r.machine, r.date, r.runs);
        let s = r.svg();
        let tags = parse(&s);
        let title = &class(&tags, "title")[0].text;
        assert!(title.contains("higher is better"), "{title}");

        let axis = class(&tags, "axis");
        assert_eq!(axis.len(), 1);
        assert_eq!(axis[0].attrs["data-scale"], "log");
        let ticks = class(&tags, "tick");
        let x_of = |v: f64| {
            let t = ticks
                .iter()
                .find(|t| (f(t, "data-value") - v).abs() < 1e-9)
                .unwrap_or_else(|| panic!("tick {v}"));
            f(t, "x1")
        };
        // Log scale: 0.1 → 1 and 1 → 10 are as wide; ticks increase left to right.
        assert!(((x_of(10.0) - x_of(1.0)) - (x_of(1.0) - x_of(0.1))).abs() < 0.2);
        assert!(x_of(0.2) < x_of(0.5) && x_of(0.5) < x_of(1.0) && x_of(2.0) < x_of(5.0));
        let labels: Vec<&str> = class(&tags, "tick-label").iter().map(|t| t.text.as_str()).collect();
        assert!(labels.contains(&"1×") && labels.contains(&"0.1×") && labels.contains(&"10×"), "{labels:?}");
        // The 5000× bar is beyond the axis (at most 1000×): clipped and marked.
        assert_eq!(axis[0].attrs["data-hi"], "1000");

        let groups = class(&tags, "group");
        let names: Vec<&str> = groups.iter().map(|g| g.attrs["data-item"].as_str()).collect();
        assert_eq!(names, vec!["e: AES<&>", "e: SHA\"256'", "e: x"]);
        let bars = class(&tags, "bar");
        assert_eq!(bars.len(), 4);
        assert!(bars.iter().all(|b| b.name == "rect"), "{bars:?}");
        let in_x: Vec<&&Tag> = bars.iter().filter(|b| b.group.as_deref() == Some("e: x")).collect();
        let backends: Vec<&str> = in_x.iter().map(|b| b.attrs["data-backend"].as_str()).collect();
        assert_eq!(backends, vec!["kvm", "passthrough"], "both backends side by side in one group");
        assert!(f(in_x[0], "y") < f(in_x[1], "y"));
        // Bars start at 1× and end at their ratio.
        let one = x_of(1.0);
        let aes = bars[0];
        assert!((f(aes, "x") + f(aes, "width") - one).abs() < 0.2, "a slower bar ends at 1×");
        assert!((f(bars[1], "x") - one).abs() < 0.2, "a faster bar starts at 1×");
        assert_eq!(class(&tags, "spread").len(), 3, "a whisker for each bar with runs");
        let clipped = class(&tags, "clipped");
        assert_eq!(clipped.len(), 1);
        assert_eq!(clipped[0].group.as_deref(), Some("e: x"));
        assert!(s.contains("5000.000 (off scale)"));
    }

    #[test]
    fn table_lists_items_and_geomeans() {
        let t = sample().table();
        assert!(t.contains("geometric mean (passthrough): 1.000"));
        assert!(t.contains("<0.95"));
        assert!(t.contains("FAILED: boom"));
        assert!(t.contains("load: 0 CPU hog(s)"), "{t}");
        let loaded = sample().with_load(crate::bench::load::Load { hogs: 2, ..Default::default() });
        assert!(loaded.table().contains("load: 2 CPU hog(s)"));
        let json = serde_json::to_value(&loaded).expect("json");
        assert_eq!(json["load"]["hogs"], 2);
    }
}
