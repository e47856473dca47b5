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
    fn geomeans() {
        assert_eq!(geomean(&[]), None);
        let g = geomean(&[0.5, 2.0]).expect("g");
        assert!((g - 1.0).abs() < 1e-12);
        let g = geomean(&[1.0, 1.0, 8.0]).expect("g");
        assert!((g - 2.0).abs() < 1e-12);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }
}
