//! Statistics for traffic splits.

/// The range a binomial count (`n` trials, success probability `p`) falls in with `sigmas` standard deviations
/// of slack. A correct 90/10 split over 2000 requests lands outside a 5-sigma band about once in 1.7 million runs.
pub fn binomial_band(n: u64, p: f64, sigmas: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    ((mean - sigmas * sd).max(0.0), (mean + sigmas * sd).min(n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_of_a_90_10_split() {
        let (low, high) = binomial_band(2000, 0.1, 5.0);
        assert!((132.0..134.0).contains(&low) && (266.0..268.0).contains(&high), "{low} {high}");
    }
}
