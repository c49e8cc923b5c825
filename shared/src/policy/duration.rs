//! Durations as policies write them: a whole number and a unit, `30s`, `15m`, `4h`, `2d`.

use std::time::Duration;

/// The accepted form, for error hints.
pub(crate) const DURATION_FORM: &str =
    "a whole number followed by s, m, h or d, such as \"30s\", \"15m\", \"4h\" or \"2d\"";

/// Parses a policy duration. Zero is refused: a zero TTL or timeout is always a mistake.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        'd' => 24 * 60 * 60,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = number.parse().ok()?;
    let seconds = value.checked_mul(seconds_per_unit)?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Formats a duration in the largest unit that divides it (`3600s` is `1h`), sub-second parts
/// dropped.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds > 0 && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_parses() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("4h"), Some(Duration::from_secs(14_400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
    }

    #[test]
    fn malformed_zero_and_overflowing_durations_are_refused() {
        for text in [
            "",
            "h",
            "4",
            "4 h",
            "-4h",
            "4.5h",
            "4w",
            "0s",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn formatting_uses_the_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(5_400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
    }
}
