//! The results of `cabinc bench`: the printed table, `bench.json` and `bench.svg`.
//! The SVG is written by hand: one horizontal bar per item and backend, with a line at 1.0.

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

fn svg(r: &Report) -> String {
    let row = 16.0;
    let label_w = 8.0 * r.items.iter().map(|i| i.name.len() + i.backend.len() + 3).max().unwrap_or(10) as f64;
    let label_w = label_w.clamp(120.0, 520.0);
    let chart_w = 560.0;
    let top = 60.0;
    let max_ratio = r.items.iter().map(|i| i.ratio).fold(1.2f64, f64::max).min(4.0);
    let scale = chart_w / max_ratio;
    let height = top + row * r.items.len() as f64 + 60.0;
    let width = label_w + chart_w + 80.0;
    let backends: Vec<&String> = r.geomean.keys().collect();
    let colour =
        |b: &str| COLOURS[backends.iter().position(|x| x.as_str() == b).unwrap_or(0) % COLOURS.len()];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#);
    let title = format!("Cabin: confined / native (higher is better) — {} — {}", r.machine.cpu, r.date);
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="14">{}</text>"#, xml_escape(&title));
    let mut legend = 10.0;
    for b in &backends {
        let g = r.geomean.get(*b).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            r#"<rect x="{legend:.0}" y="32" width="10" height="10" fill="{}"/><text x="{:.0}" y="41">{} (geomean {g:.3})</text>"#,
            colour(b),
            legend + 14.0,
            xml_escape(b)
        );
        legend += 200.0;
    }
    for (k, i) in r.items.iter().enumerate() {
        let y = top + row * k as f64;
        let w = (i.ratio.clamp(0.0, max_ratio) * scale).max(0.5);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}</title></rect><text x="{:.1}" y="{:.1}">{:.3}</text>"#,
            label_w - 6.0,
            y + row - 4.0,
            xml_escape(&format!("{} [{}]", i.name, i.backend)),
            y + 2.0,
            row - 4.0,
            colour(&i.backend),
            xml_escape(&format!(
                "native {} {u}, confined {} {u}",
                num(i.native),
                num(i.confined),
                u = i.unit
            )),
            label_w + w + 4.0,
            y + row - 4.0,
            i.ratio
        );
    }
    let x1 = label_w + scale;
    let bottom = top + row * r.items.len() as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{x1:.1}" y1="{:.1}" x2="{x1:.1}" y2="{:.1}" stroke="black" stroke-width="1" stroke-dasharray="4 2"/><text x="{x1:.1}" y="{:.1}" text-anchor="middle">1.0</text>"#,
        top - 4.0,
        bottom + 4.0,
        bottom + 18.0
    );
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

    #[test]
    fn svg_is_well_formed() {
        let s = sample().svg();
        // A small XML checker: tags balance and every entity is one we wrote.
        let body = s.split_once("?>").expect("xml decl").1;
        let mut stack: Vec<String> = Vec::new();
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
            let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "nested < in tag {tag:?}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name").to_string();
                stack.push(name);
            }
            rest = &rest[gt + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(s.contains("AES&lt;&amp;&gt;"));
        assert!(s.contains(">1.0</text>"));
        assert_eq!(s.matches("<rect").count(), 1 + 2 + 3, "background, legend, bars");
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
