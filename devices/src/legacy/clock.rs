//! Calendar arithmetic for the RTC: turning a `SystemTime` into UTC
//! calendar fields without libc (and without unsafe).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 0 = Sunday ..= 6 = Saturday
    pub weekday: u8,
}

impl DateTime {
    /// UTC calendar fields of `time`; times before the epoch clamp to it.
    pub fn from_system_time(time: SystemTime) -> Self {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_unix_seconds(secs)
    }

    pub fn from_unix_seconds(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u8,
        }
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Binary (0..=99) to packed BCD.
pub(crate) fn to_bcd(value: u8) -> u8 {
    let value = value % 100;
    ((value / 10) << 4) | (value % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_first_of_january_1970() {
        let dt = DateTime::from_unix_seconds(0);
        assert_eq!((dt.year, dt.month, dt.day), (1970, 1, 1));
        assert_eq!((dt.hour, dt.minute, dt.second), (0, 0, 0));
        assert_eq!(dt.weekday, 4);
    }

    #[test]
    fn known_timestamps_decode_to_their_calendar_dates() {
        // 2000-02-29T12:34:56Z, a Tuesday (leap day of a century leap year).
        let dt = DateTime::from_unix_seconds(951_827_696);
        assert_eq!((dt.year, dt.month, dt.day), (2000, 2, 29));
        assert_eq!((dt.hour, dt.minute, dt.second), (12, 34, 56));
        assert_eq!(dt.weekday, 2);
        // 2024-12-31T23:59:59Z, a Tuesday.
        let dt = DateTime::from_unix_seconds(1_735_689_599);
        assert_eq!((dt.year, dt.month, dt.day), (2024, 12, 31));
        assert_eq!((dt.hour, dt.minute, dt.second), (23, 59, 59));
        assert_eq!(dt.weekday, 2);
        // 2100-03-01T00:00:00Z, a Monday (2100 is not a leap year).
        let dt = DateTime::from_unix_seconds(4_107_542_400);
        assert_eq!((dt.year, dt.month, dt.day), (2100, 3, 1));
        assert_eq!(dt.weekday, 1);
    }

    #[test]
    fn pre_epoch_times_clamp_to_the_epoch() {
        let before = UNIX_EPOCH - std::time::Duration::from_secs(10);
        assert_eq!(DateTime::from_system_time(before).year, 1970);
    }

    #[test]
    fn bcd_packs_two_decimal_digits() {
        assert_eq!(to_bcd(0), 0x00);
        assert_eq!(to_bcd(9), 0x09);
        assert_eq!(to_bcd(59), 0x59);
        assert_eq!(to_bcd(99), 0x99);
    }
}
