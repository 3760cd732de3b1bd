//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5`, `2e3`), checked the way the API server parses them, so
//! a bad proxy resource flag or annotation is caught by the webhook with a message naming where it came from.

use std::fmt;
use std::str::FromStr;

/// A syntactically valid, non-negative Kubernetes quantity. Keeps the text as written; `value` is for comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

/// Why a text is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity (e.g. \"100m\", \"0.5\", \"128Mi\", \"1G\")")]
pub struct QuantityError(pub String);

impl Quantity {
    /// A quantity from a constant of this program (the defaults); a test checks every such constant parses.
    #[allow(clippy::expect_used)]
    pub fn from_static(text: &'static str) -> Self {
        text.parse().expect("built-in quantity constants are valid")
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The amount in base units (cores, bytes), for comparing a request with a limit.
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError(text.to_string());
        let unsigned = text.strip_prefix('+').unwrap_or(text);
        let split = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(split);
        if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
            return Err(err());
        }
        let mantissa: f64 = number.parse().map_err(|_| err())?;
        let factor = suffix_factor(suffix).ok_or_else(err)?;
        Ok(Self { text: text.to_string(), value: mantissa * factor })
    }
}

/// The multiplier of a quantity suffix: binary SI, decimal SI, or a decimal exponent (`e3`, `E-2`).
fn suffix_factor(suffix: &str) -> Option<f64> {
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exponent.parse().ok()?)
        }
    };
    Some(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Option<f64> {
        text.parse::<Quantity>().ok().map(|q| q.value())
    }

    #[test]
    fn accepts_what_kubernetes_accepts() {
        assert_eq!(value("100m"), Some(0.1));
        assert_eq!(value("1"), Some(1.0));
        assert_eq!(value("0.5"), Some(0.5));
        assert_eq!(value(".5"), Some(0.5));
        assert_eq!(value("+2"), Some(2.0));
        assert_eq!(value("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(value("1G"), Some(1e9));
        assert_eq!(value("2e3"), Some(2000.0));
        assert_eq!(value("5E-1"), Some(0.5));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "m", "-1", "1.2.3", "100 m", "128MB", "1mi", "1e", "1e+", "abc", "1Ki5", "NaN"] {
            assert_eq!(value(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn keeps_the_text_as_written() {
        let q: Quantity = "1000m".parse().unwrap();
        assert_eq!(q.to_string(), "1000m");
        assert_eq!(q.value(), 1.0);
    }
}
