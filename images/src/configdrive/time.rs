//! UTC calendar time for the ISO 9660 date fields, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time, seconds precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Timestamp {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Timestamp {
    /// The current time; the epoch when the clock is before it.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// Converts seconds since the epoch (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        Self {
            // ISO 9660 dates end at 9999 (descriptors) and 2155 (records); clamp, never wrap.
            year: year.min(9999) as u32,
            month: month as u32,
            day: day as u32,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// The 17-byte descriptor form: `YYYYMMDDHHMMSScc` digits and a GMT offset of 0.
    pub fn descriptor_date(self) -> [u8; 17] {
        let s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}00",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        let mut out = [0u8; 17];
        out[..16].copy_from_slice(s.as_bytes());
        out
    }

    /// The 7-byte directory-record form: years since 1900, month, day, h, m, s, GMT offset.
    pub fn record_date(self) -> [u8; 7] {
        let years = self.year.saturating_sub(1900).min(255) as u8;
        [
            years,
            self.month as u8,
            self.day as u8,
            self.hour as u8,
            self.minute as u8,
            self.second as u8,
            0,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_known_dates() {
        assert_eq!(
            &Timestamp::from_unix(0).descriptor_date()[..16],
            b"1970010100000000"
        );
        // 2024-02-29 12:34:56 UTC
        let t = Timestamp::from_unix(1_709_210_096);
        assert_eq!(&t.descriptor_date()[..16], b"2024022912345600");
        assert_eq!(t.record_date(), [124, 2, 29, 12, 34, 56, 0]);
    }
}
