//! Times of messages: the server's clock (milliseconds since the Unix epoch, from a stored
//! message's `options.at`) turned into dates and day headings.
//!
//! The server renders in UTC — it cannot know the reader's time zone — and the page switches
//! to the reader's zone once it runs in the browser (`browser::local_offset_minutes`); the
//! calendar arithmetic is the same for both, given the zone's offset at that moment.

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    /// Year.
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
}

impl Day {
    /// The date at `ms` (since the Unix epoch) in a zone `offset_minutes` ahead of UTC.
    pub fn at(ms: i64, offset_minutes: i64) -> Self {
        Self::from_days((ms + offset_minutes * 60_000).div_euclid(DAY_MS))
    }

    /// Days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's `civil_from_days`).
    fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self { year, month, day }
    }

    /// Days since 1970-01-01 (`days_from_civil`).
    fn days(self) -> i64 {
        let year = self.year - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let month = i64::from(self.month);
        let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
            + i64::from(self.day)
            - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The day before.
    pub fn yesterday(self) -> Self {
        Self::from_days(self.days() - 1)
    }

    /// `2026-03-01`: a stable key for the day.
    pub fn key(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// Day of the week, 0 = Monday.
    fn weekday(self) -> usize {
        // 1970-01-01 was a Thursday.
        (self.days() + 3).rem_euclid(7) as usize
    }

    /// "Today", "Yesterday", "Monday 2 March", or with the year when it is not `today`'s:
    /// the heading the server renders before the page knows the reader's language.
    pub fn heading(self, today: Day) -> String {
        const WEEKDAYS: [&str; 7] = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        if self == today {
            return "Today".into();
        }
        if self == today.yesterday() {
            return "Yesterday".into();
        }
        let month = MONTHS[(self.month as usize).clamp(1, 12) - 1];
        let weekday = WEEKDAYS[self.weekday()];
        if self.year == today.year {
            format!("{weekday} {} {month}", self.day)
        } else {
            format!("{weekday} {} {month} {}", self.day, self.year)
        }
    }
}

/// `HH:MM` at `ms` in a zone `offset_minutes` ahead of UTC.
pub fn clock(ms: i64, offset_minutes: i64) -> String {
    let minutes = (ms + offset_minutes * 60_000).rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `2026-03-01T09:05:00.000Z`: the machine-readable time of a `<time>` element.
pub fn iso(ms: i64) -> String {
    let day = Day::at(ms, 0);
    let in_day = ms.rem_euclid(DAY_MS);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day.key(),
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Milliseconds since the Unix epoch of an ISO 8601 UTC time such as a browser's
/// `toISOString()` writes (`2026-03-01T09:05:00.000Z`; seconds' fraction optional).
pub fn parse_iso(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if text.len() < 20 || separators.iter().any(|&(at, c)| text.as_bytes()[at] != c) {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let rest = text.get(19..)?;
    let (millis, zone) = match rest.strip_prefix('.') {
        Some(fraction) => {
            let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
            let millis = format!("{digits:0<3}").get(..3)?.parse::<i64>().ok()?;
            (millis, &fraction[digits.len()..])
        }
        None => (0, rest),
    };
    let valid = zone == "Z"
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid {
        return None;
    }
    let date = Day {
        year,
        month: month as u32,
        day: day as u32,
    };
    Some(date.days() * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARCH_1_2026_0905: i64 = 1_772_355_900_000;

    #[test]
    fn server_times_read_as_dates_and_clock_times_in_a_zone() {
        assert_eq!(iso(MARCH_1_2026_0905), "2026-03-01T09:05:00.000Z");
        assert_eq!(clock(MARCH_1_2026_0905, 0), "09:05");
        assert_eq!(clock(MARCH_1_2026_0905, 60), "10:05");
        assert_eq!(clock(MARCH_1_2026_0905, -10 * 60), "23:05");
        assert_eq!(Day::at(MARCH_1_2026_0905, 0).key(), "2026-03-01");
        assert_eq!(Day::at(MARCH_1_2026_0905, -10 * 60).key(), "2026-02-28");
        assert_eq!(Day::at(0, 0).key(), "1970-01-01");
        assert_eq!(Day::at(-1, 0).key(), "1969-12-31");
    }

    #[test]
    fn day_headings_say_today_yesterday_or_the_date() {
        let today = Day::at(MARCH_1_2026_0905, 0);
        assert_eq!(today.heading(today), "Today");
        assert_eq!(today.yesterday().key(), "2026-02-28");
        assert_eq!(today.yesterday().heading(today), "Yesterday");
        let earlier = Day::at(MARCH_1_2026_0905 - 5 * DAY_MS, 0);
        assert_eq!(earlier.heading(today), "Tuesday 24 February");
        let last_year = Day::at(MARCH_1_2026_0905 - 365 * DAY_MS, 0);
        assert_eq!(last_year.heading(today), "Saturday 1 March 2025");
        let new_year = Day {
            year: 2026,
            month: 1,
            day: 1,
        };
        assert_eq!(new_year.yesterday().key(), "2025-12-31");
    }

    #[test]
    fn browser_iso_times_are_read_back_exactly() {
        assert_eq!(
            parse_iso("2026-03-01T09:05:00.000Z"),
            Some(MARCH_1_2026_0905)
        );
        assert_eq!(parse_iso("2026-03-01T09:05:00Z"), Some(MARCH_1_2026_0905));
        assert_eq!(
            parse_iso("2026-03-01T09:05:00.5Z"),
            Some(MARCH_1_2026_0905 + 500)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T09:05:00Z",
            "2026-03-01T09:05:00+01:00",
            "2026-03-01 09:05:00Z",
            "2026-03-01T0a:05:00Z",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }
}
