//! Statistics for `cabinc bench`: medians, higher-is-better ratios and geometric means.

/// The median of `xs` (mean of the middle two for an even count); `None` when empty or non-finite.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Confined performance relative to native, where above 1.0 is faster confined:
/// `confined / native` for higher-is-better scores, `native / confined` otherwise.
pub fn ratio(native: f64, confined: f64, higher_is_better: bool) -> Option<f64> {
    if !(native > 0.0 && confined > 0.0 && native.is_finite() && confined.is_finite()) {
        return None;
    }
    Some(if higher_is_better { confined / native } else { native / confined })
}

/// What `cabinc bench` warns about before it measures: one run per side (no median, no
/// spread), and a loaded machine (a 1-minute load average of half the CPUs or more: the
/// numbers measure the other work too).
pub fn warnings(runs: usize, load: Option<f64>, cpus: usize) -> Vec<String> {
    let mut w = Vec::new();
    if runs == 1 {
        w.push("--runs 1: one run per side gives no median and no spread; use --runs 3 or more".into());
    }
    if let Some(l) = load.filter(|&l| l >= cpus as f64 / 2.0) {
        w.push(format!(
            "the machine is loaded (load average {l:.2} on {cpus} CPUs): the numbers will measure the other \
             work too; rerun when it is idle"
        ));
    }
    w
}

/// The spread of the runs as ratios: the lowest and highest [`ratio`] of one confined run to
/// the native median; `None` when no run gives a ratio.
pub fn ratio_range(native: f64, confined: &[f64], higher_is_better: bool) -> Option<(f64, f64)> {
    let rs: Vec<f64> = confined.iter().filter_map(|&c| ratio(native, c, higher_is_better)).collect();
    let lo = rs.iter().copied().min_by(f64::total_cmp)?;
    let hi = rs.iter().copied().max_by(f64::total_cmp)?;
    Some((lo, hi))
}

/// The geometric mean of positive values; `None` when empty or any is not positive.
pub fn geomean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratios_are_higher_is_better() {
        assert_eq!(ratio(100.0, 90.0, true), Some(0.9));
        assert_eq!(ratio(1.0, 2.0, false), Some(0.5));
        assert_eq!(ratio(0.0, 2.0, false), None);
        assert_eq!(ratio(1.0, -2.0, true), None);
    }

    #[test]
    fn warns_about_one_run_and_load() {
        assert!(warnings(3, Some(0.1), 2).is_empty());
        assert!(warnings(1, None, 2)[0].contains("--runs 1"));
        let w = warnings(3, Some(1.5), 2);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("loaded (load average 1.50 on 2 CPUs)"), "{w:?}");
    }

    #[test]
    fn ranges() {
        assert_eq!(ratio_range(100.0, &[90.0, 110.0, 100.0], true), Some((0.9, 1.1)));
        assert_eq!(ratio_range(1.0, &[2.0, 0.5], false), Some((0.5, 2.0)));
        assert_eq!(ratio_range(1.0, &[], true), None);
    }

    #[test]
    fn geomeans() {
        assert_eq!(geomean(&[]), None);
        let g = geomean(&[0.5, 2.0]).expect("g");
        assert!((g - 1.0).abs() < 1e-12);
        let g = geomean(&[1.0, 1.0, 8.0]).expect("g");
        assert!((g - 2.0).abs() < 1e-12);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }
}
