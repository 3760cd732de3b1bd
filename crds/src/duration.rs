//! Durations as Istio writes them: protobuf JSON (`"1.5s"`) plus the Go forms users type (`"250ms"`, `"1m"`, `"1h"`).

use std::time::Duration;

/// Parses `"10s"`, `"0.5s"`, `"250ms"`, `"1m"`, `"2h"`, `"100us"`. Negative or unit-less values are errors.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {text:?} has no unit (use e.g. \"10s\" or \"250ms\")"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("duration {text:?} does not start with a non-negative number"))?;
    let seconds_per_unit = match unit {
        "h" => 3600.0,
        "m" => 60.0,
        "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        other => return Err(format!("duration {text:?} has unknown unit {other:?} (use h, m, s, ms, us or ns)")),
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > 315_576_000_000.0 {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_istio_users_write() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }
}
