//! Value parsers shared by several commands: durations with bounds, ratios, causal contexts.

use std::time::Duration;

use ringkv::version::Context;

/// Longest request timeout accepted by `--timeout`.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Parses a human duration (`10s`, `1m30s`, `500ms`) within `min..=max`.
pub fn duration_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 10s, 500ms or 2m ({e})"))?;
    if d < min || d > max {
        return Err(format!(
            "{} is outside {} to {}",
            humantime::format_duration(d),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// `--timeout`: 1 ms to [`MAX_REQUEST_TIMEOUT`].
pub fn request_timeout(s: &str) -> Result<Duration, String> {
    duration_within(s, Duration::from_millis(1), MAX_REQUEST_TIMEOUT)
}

/// A fraction in `0.0..=1.0`.
pub fn ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0.0 to 1.0"))
    }
}

/// A causal context token as printed by `ringctl get`.
pub fn context(s: &str) -> Result<Context, String> {
    Context::from_token(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_human_units_and_respect_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert_eq!(
            duration_within("10s", min, max),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            duration_within(" 2m ", min, max),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(duration_within("1h", min, max), Ok(max));
        assert!(duration_within("1h1s", min, max)
            .unwrap_err()
            .contains("outside"));
        assert!(duration_within("500ms", min, max)
            .unwrap_err()
            .contains("outside"));
        assert!(duration_within("ten", min, max)
            .unwrap_err()
            .contains("not a duration"));
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert_eq!(ratio("0"), Ok(0.0));
        assert_eq!(ratio("0.25"), Ok(0.25));
        assert_eq!(ratio("1"), Ok(1.0));
        assert!(ratio("1.01").is_err());
        assert!(ratio("-0.1").is_err());
        assert!(ratio("NaN").is_err());
        assert!(ratio("half").is_err());
    }

    #[test]
    fn context_tokens_round_trip_and_garbage_is_refused() {
        let empty = Context::default();
        assert_eq!(context(&empty.to_token()), Ok(empty));
        assert!(context("not hex!").is_err());
    }
}
