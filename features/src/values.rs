//! Parsing of raw text values into contract types.
//!
//! Exports spell the same value many ways (PostgreSQL's `2024-01-01 10:00:00+00`,
//! ISO 8601 with `T` and `Z`, integers exported as floats). Each parser accepts
//! the unambiguous spellings and nothing else; anything it refuses is quarantined
//! by the validator under the column's `type` rule.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// Days since the Unix epoch.
pub type Days = i32;

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

const ZONED_FORMATS: &[&str] = &["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"];

/// A timestamp in UTC. Values without an offset are taken as UTC (the contract's
/// convention); values with one are converted. A bare date means midnight.
pub fn parse_timestamp(s: &str) -> Option<Micros> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ZONED_FORMATS {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    let s = s.strip_suffix(" UTC").unwrap_or(s);
    for f in NAIVE_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
}

pub fn parse_date(s: &str) -> Option<Days> {
    let s = s.trim();
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        let micros = parse_timestamp(s)?;
        DateTime::from_timestamp_micros(micros).map(|t| t.date_naive())
    })?;
    Some(days_since_epoch(date))
}

pub fn days_since_epoch(date: NaiveDate) -> Days {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as Days
}

pub fn date_from_days(days: Days) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date") + chrono::Duration::days(days as i64)
}

/// An integer; `3.0` is accepted (float exports of integer columns), `3.5` is not.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// A finite number (`NaN` and `inf`, which Rust would parse, are refused).
pub fn parse_float(s: &str) -> Option<f64> {
    let f = s.trim().parse::<f64>().ok()?;
    f.is_finite().then_some(f)
}

pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && iso_currency::Currency::from_code(code).is_some()
}

/// `ZZ` stands for an unknown region (CLDR's use of the user-assigned code), which
/// mappings produce for names that name no single country.
pub const UNKNOWN_COUNTRY: &str = "ZZ";

pub fn is_country(code: &str) -> bool {
    code == UNKNOWN_COUNTRY
        || (code.len() == 2 && isocountry::CountryCode::for_alpha2(code).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_export_spellings() {
        let want = parse_timestamp("2024-03-01 10:00:00").unwrap();
        for s in [
            "2024-03-01T10:00:00Z",
            "2024-03-01 10:00:00+00",
            "2024-03-01 12:00:00+02:00",
            "2024-03-01T10:00:00.000",
            "2024-03-01 10:00",
            "2024-03-01 10:00:00 UTC",
        ] {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_timestamp("2024-03-01"),
            Some(want - 10 * 3_600_000_000)
        );
        for bad in [
            "2024-13-45 25:61:00",
            "yesterday",
            "",
            "01/03/2024",
            "2024-02-30",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_int("17850.0"), Some(17850));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("3.5"), None);
        assert_eq!(parse_float("NaN"), None);
        assert_eq!(parse_float("inf"), None);
        assert_eq!(parse_float(" 2.50 "), Some(2.5));
    }

    #[test]
    fn codes() {
        assert!(is_currency("EUR") && is_currency("JPY"));
        assert!(!is_currency("EUX") && !is_currency("eur") && !is_currency("EURO"));
        assert!(is_country("DE") && is_country("ZZ"));
        assert!(!is_country("XX") && !is_country("de") && !is_country("DEU"));
    }

    #[test]
    fn date_round_trip() {
        let d = NaiveDate::from_ymd_opt(2011, 12, 9).unwrap();
        assert_eq!(date_from_days(days_since_epoch(d)), d);
        assert_eq!(parse_date("2011-12-09"), Some(days_since_epoch(d)));
    }
}
