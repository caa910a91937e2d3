//! The one duration grammar used everywhere a person writes a duration
//! (`spec.pollInterval`, command-line flags, simulator scripts): one or more
//! `<digits><unit>` parts with units `h`, `m`, `s`, e.g. `30s`, `5m`, `1h30m`.
//! The CRD's schema pattern is [`PATTERN`], so admission and code agree.

use std::time::Duration;

/// The schema pattern for a duration; `parse` accepts exactly the strings it matches.
pub const PATTERN: &str = "^([0-9]{1,5}[hms]){1,3}$";
/// The longest duration string the schema allows.
pub const MAX_LENGTH: u32 = 18;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: write whole numbers with units h, m or s, like 30s, 5m or 1h30m")]
pub struct DurationError(pub String);

pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    if text.is_empty() || text.len() > MAX_LENGTH as usize {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for ch in text.chars() {
        match ch {
            '0'..='9' => {
                if digits.len() == 5 {
                    return Err(err());
                }
                digits.push(ch);
            }
            'h' | 'm' | 's' => {
                if digits.is_empty() {
                    return Err(err());
                }
                let value: u64 = digits.parse().map_err(|_| err())?;
                let unit = match ch {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total += value * unit;
                digits.clear();
                parts += 1;
                if parts > 3 {
                    return Err(err());
                }
            }
            _ => return Err(err()),
        }
    }
    if !digits.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// The shortest text for a duration in this grammar (`90s` → `1m30s`).
pub fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", "30", "s", "1.5m", "-1s", "10ms", "1d", " 30s", "30S", "1h1m1s1s", "123456s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [0, 1, 59, 60, 90, 3600, 5400, 86399] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
