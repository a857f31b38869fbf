//! The expiry rule shared by uploads, the API's list and the 6-hourly scan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Seconds in a day, the unit of `expiry_warning_days` and of days left.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// The default of `expiry_warning_days`.
pub const DEFAULT_WARNING_DAYS: u32 = 30;

/// The expiry status of a certificate at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStatus {
    /// At least `warning_days` days left.
    Valid,
    /// Fewer than `warning_days` × 86,400 s left, not yet expired.
    Expiring,
    /// `now` is after not_after.
    Expired,
}

impl ExpiryStatus {
    /// Returns the status name used in the API and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryStatus::Valid => "valid",
            ExpiryStatus::Expiring => "expiring",
            ExpiryStatus::Expired => "expired",
        }
    }
}

/// Classifies `not_after` at `now`. RFC 5280 section 4.1.2.5 makes not_after inclusive, so a
/// certificate is expired only when `now` is strictly after it.
pub fn classify(not_after: DateTime<Utc>, now: DateTime<Utc>, warning_days: u32) -> ExpiryStatus {
    if now > not_after {
        return ExpiryStatus::Expired;
    }
    let remaining = (not_after - now).num_seconds();
    if remaining < i64::from(warning_days) * SECONDS_PER_DAY {
        ExpiryStatus::Expiring
    } else {
        ExpiryStatus::Valid
    }
}

/// Whole days left: ⌊(not_after − now) ÷ 86,400 s⌋, negative once expired.
pub fn days_left(not_after: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (not_after - now).num_seconds().div_euclid(SECONDS_PER_DAY)
}

/// Parses the `expiry_warning_days` variable: a whole number of days from 1 to 3650.
///
/// # Errors
///
/// A message naming the value and the accepted range.
pub fn parse_warning_days(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(days) if (1..=3650).contains(&days) => Ok(days),
        _ => Err(format!("expiry_warning_days {value:?} is not a whole number of days from 1 to 3650")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    #[test]
    fn classify_at_boundaries() {
        let not_after = at(100 * SECONDS_PER_DAY);

        assert_eq!(classify(not_after, at(100 * SECONDS_PER_DAY), 30), ExpiryStatus::Expiring);
        assert_eq!(classify(not_after, at(100 * SECONDS_PER_DAY + 1), 30), ExpiryStatus::Expired);
        assert_eq!(classify(not_after, at(70 * SECONDS_PER_DAY), 30), ExpiryStatus::Valid);
        assert_eq!(classify(not_after, at(70 * SECONDS_PER_DAY + 1), 30), ExpiryStatus::Expiring);
    }

    #[test]
    fn days_left_floors() {
        let not_after = at(10 * SECONDS_PER_DAY);

        assert_eq!(days_left(not_after, at(0)), 10);
        assert_eq!(days_left(not_after, at(1)), 9);
        assert_eq!(days_left(not_after, at(10 * SECONDS_PER_DAY)), 0);
        assert_eq!(days_left(not_after, at(10 * SECONDS_PER_DAY + 1)), -1);
    }

    #[test]
    fn warning_days_rejects_bad_values() {
        assert_eq!(parse_warning_days("30"), Ok(30));
        assert!(parse_warning_days("0").is_err());
        assert!(parse_warning_days("thirty").is_err());
        assert!(parse_warning_days("-1").is_err());
    }
}
