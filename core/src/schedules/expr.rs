//! Cron expressions and time zones of schedules: parsing (with the messages validation shows)
//! and the ticks they produce.
//!
//! The `cron` crate wants a seconds field first; a five-field expression (minute hour day
//! month weekday, as in crontab) gets `0` seconds prepended. Six fields are taken as given.
//! Seven-field (year) forms are refused, to keep to the documented contract. Numeric days of
//! week are refused too: the crate counts Sunday as 1 where crontab counts it as 0, so
//! `1-5` would silently mean Sunday-Thursday; names (`MON-FRI`) mean the same everywhere.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Most ticks counted when catching up after a long stop; beyond it the count says "at least".
pub const MAX_COUNTED_TICKS: u64 = 10_000;

/// The time zone a schedule without one uses.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// A parsed schedule: the ticks of `cron` read as wall-clock times in `tz`.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

/// Ticks due at some instant: the latest, and how many earlier ones it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub tick: DateTime<Utc>,
    /// Due ticks before `tick` that are not fired (missed while no scheduler ran).
    pub missed: u64,
}

/// Parses a cron expression, returning a message for the user on failure.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return trimmed
            .parse::<cron::Schedule>()
            .map_err(|e| format!("not a valid cron expression: {e}"));
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let full = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 => fields.join(" "),
        n => {
            return Err(format!(
                "must have five fields (minute hour day month weekday) or six with leading \
                 seconds, not {n}"
            ));
        }
    };
    let weekday = full.split_whitespace().nth(5).unwrap_or_default();
    if weekday.bytes().any(|b| b.is_ascii_digit()) && !weekday.starts_with("*/") {
        return Err(format!(
            "day of week `{weekday}`: use day names (e.g. MON-FRI); numbered days differ \
             between cron dialects"
        ));
    }
    full.parse::<cron::Schedule>()
        .map_err(|e| format!("not a valid cron expression: {e}"))
}

/// Parses an IANA time-zone name such as `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("`{name}` is not an IANA time zone (e.g. `UTC`, `Europe/Berlin`)"))
}

impl CronSchedule {
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, String> {
        Ok(CronSchedule {
            schedule: parse_cron(expr)?,
            tz: parse_timezone(timezone)?,
        })
    }

    /// The first tick strictly after `t`. Local times a DST change skips produce no tick; a
    /// local time it repeats produces one, at its first occurrence (the search resumes after
    /// the tick's wall-clock time, so the repeat is behind it).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The ticks in `(after, now]`, collapsed into the latest one and a count of the others.
    pub fn due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<Due> {
        let mut latest = None;
        let mut count = 0u64;
        let mut cur = after;
        // Stepping with `next_after` (not one iterator) keeps the DST rule of `next_after`.
        while count < MAX_COUNTED_TICKS {
            match self.next_after(cur) {
                Some(t) if t <= now => {
                    latest = Some(t);
                    count += 1;
                    cur = t;
                }
                _ => break,
            }
        }
        if count == MAX_COUNTED_TICKS {
            // Too far behind to walk: the latest due tick is the one before the next after now.
            latest = self.schedule_prev_at_or_before(now).or(latest);
        }
        latest.map(|tick| Due {
            tick,
            missed: count.saturating_sub(1),
        })
    }

    fn schedule_prev_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let later = now + chrono::Duration::nanoseconds(1);
        self.schedule
            .after(&later.with_timezone(&self.tz))
            .next_back()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_parse_others_are_refused_with_reasons() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("0 9 * * MON-FRI").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert!(parse_cron("* * * *").unwrap_err().contains("not 4"));
        assert!(
            parse_cron("0 0 0 1 1 * 2030")
                .unwrap_err()
                .contains("not 7")
        );
        assert!(parse_cron("0 9 * * 1-5").unwrap_err().contains("day names"));
        assert!(
            parse_cron("61 * * * *")
                .unwrap_err()
                .contains("not a valid")
        );
        assert!(parse_cron("").is_err());
        assert!(parse_timezone("Europe/Berlin").is_ok());
        assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn due_collapses_missed_ticks_into_the_latest() {
        let s = CronSchedule::parse("*/2 * * * * *", "UTC").unwrap();
        let from = at("2026-01-01T00:00:00Z");
        assert_eq!(s.due(from, at("2026-01-01T00:00:01.9Z")), None);
        assert_eq!(
            s.due(from, at("2026-01-01T00:00:02Z")),
            Some(Due {
                tick: at("2026-01-01T00:00:02Z"),
                missed: 0
            })
        );
        assert_eq!(
            s.due(from, at("2026-01-01T00:00:09Z")),
            Some(Due {
                tick: at("2026-01-01T00:00:08Z"),
                missed: 3
            })
        );
        // Far behind: counting stops, the tick is still the latest due one.
        let d = s.due(from, at("2026-01-03T00:00:01Z")).unwrap();
        assert_eq!(d.tick, at("2026-01-03T00:00:00Z"));
        assert_eq!(d.missed, MAX_COUNTED_TICKS - 1);
    }

    #[test]
    fn wall_clock_ticks_follow_the_time_zone_across_dst() {
        // 02:30 does not exist in Berlin on 2026-03-29 (clocks jump 02:00 -> 03:00): no tick.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let next = s.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-30T00:30:00Z"));
        // 02:30 happens twice on 2026-10-25 (03:00 -> 02:00): it fires once, at the first.
        let first = s.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        let second = s.next_after(first).unwrap();
        assert_eq!(second, at("2026-10-26T01:30:00Z"));
        // Winter time: 09:00 Berlin is 08:00 UTC.
        let s = CronSchedule::parse("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let next = s
            .next_after(Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap())
            .unwrap();
        assert_eq!(next, at("2026-12-07T08:00:00Z"));
    }
}
