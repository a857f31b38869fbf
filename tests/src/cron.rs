//! The cron trigger: the `spin-cron` world's `handle-cron-event` export, schedule parsing, and
//! the scheduler that fires each `[[trigger.cron]]` on its expression.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/cron.wit",
        world: "fermyon:spin-cron/spin-cron",
        exports: { default: async },
    });
}

pub use bindings::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};

/// Parses a cron expression the way the Spin cron trigger reads it: six fields, seconds first
/// (`0 0 */6 * * *`). The `cron` crate also accepts a seventh field for the year.
pub fn parse_schedule(expression: &str) -> Result<cron::Schedule> {
    cron::Schedule::from_str(expression).with_context(|| {
        format!(
            "invalid cron_expression {expression:?}: write six fields, seconds first, such as \"0 0 */6 * * *\" for every six hours"
        )
    })
}

/// How often the scheduler rechecks the wall clock while waiting, so that a test that moves
/// the clock forward has due events fire within about this long.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Returns the next time after `now` at which `schedule` fires.
pub(crate) fn next_fire(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&now).next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn cron_six_fields_seconds_first() {
        let schedule = parse_schedule("0 0 */6 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 7, 30, 0).unwrap();
        assert_eq!(next_fire(&schedule, now), Some(Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()));
    }

    #[test]
    fn cron_every_second() {
        let schedule = parse_schedule("* * * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(next_fire(&schedule, now), Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 1).unwrap()));
    }

    #[test]
    fn cron_rejects_five_fields() {
        let err = format!("{:#}", parse_schedule("0 */6 * * *").unwrap_err());
        assert!(err.contains("six fields"), "{err}");
    }
}
