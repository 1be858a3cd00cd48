//! `duet-bench summarize`: medians of repeated runs per server, and ratios to a baseline.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Saved {
    scenario: String,
    label: String,
    #[serde(default)]
    params: serde_json::Value,
    rows: Vec<SavedRow>,
}

#[derive(Deserialize)]
struct SavedRow {
    metric: String,
    value: Option<f64>,
    unit: String,
}

/// Median of `xs` (mean of the middle two for an even count).
pub fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

pub fn print(baseline: &str, files: &[PathBuf]) -> anyhow::Result<()> {
    // (scenario + params) -> [(metric, unit) -> label -> values], metrics in the order in
    // which they first appear.
    type Values = BTreeMap<String, Vec<f64>>;
    type Metrics = Vec<((String, String), Values)>;
    let mut by: BTreeMap<String, Metrics> = BTreeMap::new();
    let mut labels: Vec<String> = vec![baseline.to_owned()];
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let Ok(saved) = serde_json::from_str::<Saved>(&text) else {
            eprintln!("skipping {} (not a report)", f.display());
            continue;
        };
        if !labels.contains(&saved.label) {
            labels.push(saved.label.clone());
        }
        let key = format!("{} {}", saved.scenario, saved.params);
        let metrics = by.entry(key).or_default();
        for r in &saved.rows {
            let Some(v) = r.value else { continue };
            let id = (r.metric.clone(), r.unit.clone());
            let at = match metrics.iter().position(|(k, _)| *k == id) {
                Some(at) => at,
                None => {
                    metrics.push((id, Values::new()));
                    metrics.len() - 1
                }
            };
            metrics[at]
                .1
                .entry(saved.label.clone())
                .or_default()
                .push(v);
        }
    }
    for (scenario, metrics) in &by {
        println!("\n== {scenario}");
        print!("  {:34}", "metric (median of runs)");
        for l in &labels {
            print!(" {l:>22}");
        }
        println!();
        for ((metric, unit), per_label) in metrics {
            print!("  {:34}", format!("{metric} [{unit}]"));
            let mut base = per_label.get(baseline).cloned().unwrap_or_default();
            let base = median(&mut base);
            for l in &labels {
                let mut v = per_label.get(l).cloned().unwrap_or_default();
                let n = v.len();
                let cell = match (median(&mut v), base) {
                    (Some(m), Some(b)) if l != baseline && b != 0.0 => {
                        format!("{m:.4} ({:.2}x) n={n}", m / b)
                    }
                    (Some(m), _) => format!("{m:.4} n={n}"),
                    (None, _) => "-".to_owned(),
                };
                print!(" {cell:>22}");
            }
            println!();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(&mut []), None);
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
