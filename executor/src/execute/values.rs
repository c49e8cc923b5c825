//! Result values as text for the summary, per driver, by type.
//!
//! Every renderer starts from the raw value: NULL is [`Cell::Null`], known types are read by their
//! type name, anything else is tried as text and otherwise shown as [`Cell::Unrendered`] with its
//! type name. Nothing here may panic on an odd value: PostgreSQL's binary values are read by hand
//! with checked arithmetic (sqlx's chrono decoders panic on `infinity` dates and timestamps), and
//! each cell is rendered under `catch_unwind` as a last resort. Binary values show as `\x` and
//! hex; long values are cut (only the first bytes are ever formatted).

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use countersign_shared::summary::{Cell, MAX_CELL_CHARS};
use sqlx::mysql::{MySql, MySqlRow};
use sqlx::postgres::{PgRow, PgTypeInfo, PgTypeKind, PgValueFormat};
use sqlx::sqlite::SqliteRow;
use sqlx::types::chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sqlx::types::BigDecimal;
use sqlx::{Column, Decode, Row, Type, TypeInfo, ValueRef};

/// Text built for one cell stops growing past this many bytes; [`Cell::text`] cuts it further.
const RENDER_LIMIT: usize = MAX_CELL_CHARS * 4;

/// Renders one cell; a panic in a decoder becomes an unrendered cell instead of a crash.
fn guarded(render: impl FnOnce() -> Cell) -> Cell {
    catch_unwind(AssertUnwindSafe(render))
        .unwrap_or_else(|_| Cell::Unrendered("undecodable value".to_string()))
}

/// `\x` and the hex of the first bytes; an ellipsis when there were more.
fn hex_text(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAX_CELL_CHARS / 2)];
    let mut text = format!("\\x{}", hex::encode(shown));
    if shown.len() < bytes.len() {
        text.push('…');
    }
    text
}

fn cell_or(text: Option<String>, type_name: &str) -> Cell {
    match text {
        Some(text) => Cell::text(&text),
        None => Cell::Unrendered(type_name.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// One PostgreSQL cell.
pub(crate) fn pg_cell(row: &PgRow, index: usize) -> Cell {
    guarded(|| {
        let Ok(value) = row.try_get_raw(index) else {
            return Cell::Unrendered("missing column".to_string());
        };
        if value.is_null() {
            return Cell::Null;
        }
        let type_info = value.type_info().into_owned();
        let text = match value.format() {
            PgValueFormat::Text => value.as_str().ok().map(str::to_string),
            PgValueFormat::Binary => value
                .as_bytes()
                .ok()
                .and_then(|bytes| pg_binary(&type_info, bytes)),
        };
        cell_or(text, type_info.name())
    })
}

/// A PostgreSQL value in binary format as text, or None when the type is not rendered.
fn pg_binary(type_info: &PgTypeInfo, bytes: &[u8]) -> Option<String> {
    match type_info.kind() {
        PgTypeKind::Enum(_) => return utf8(bytes),
        PgTypeKind::Domain(base) => return pg_binary(base, bytes),
        PgTypeKind::Array(element) => return pg_array(element, bytes),
        _ => {}
    }
    let name = type_info.name();
    match name {
        "BOOL" => match bytes {
            [0] => Some("false".to_string()),
            [_] => Some("true".to_string()),
            _ => None,
        },
        "INT2" => fixed::<2>(bytes).map(|b| i16::from_be_bytes(b).to_string()),
        "INT4" => fixed::<4>(bytes).map(|b| i32::from_be_bytes(b).to_string()),
        "INT8" => fixed::<8>(bytes).map(|b| i64::from_be_bytes(b).to_string()),
        "OID" => fixed::<4>(bytes).map(|b| u32::from_be_bytes(b).to_string()),
        "FLOAT4" => fixed::<4>(bytes).map(|b| f32::from_be_bytes(b).to_string()),
        "FLOAT8" => fixed::<8>(bytes).map(|b| f64::from_be_bytes(b).to_string()),
        "NUMERIC" => pg_numeric(bytes),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "JSON" | "XML" => utf8(bytes),
        "\"CHAR\"" => match bytes {
            [byte] if byte.is_ascii() => Some(char::from(*byte).to_string()),
            [byte] => Some(format!("\\{byte:03o}")),
            _ => None,
        },
        "JSONB" => match bytes.split_first() {
            Some((1, json)) => utf8(json),
            _ => None,
        },
        "BYTEA" => Some(hex_text(bytes)),
        "UUID" => fixed::<16>(bytes).map(|b| uuid_text(&b)),
        "DATE" => fixed::<4>(bytes).and_then(|b| pg_date(i32::from_be_bytes(b))),
        "TIMESTAMP" => fixed::<8>(bytes).and_then(|b| pg_timestamp(i64::from_be_bytes(b))),
        "TIMESTAMPTZ" => fixed::<8>(bytes).and_then(|b| {
            let micros = i64::from_be_bytes(b);
            let text = pg_timestamp(micros)?;
            // Infinite timestamps have no zone; finite ones come in UTC.
            Some(if micros == i64::MAX || micros == i64::MIN {
                text
            } else {
                text + "+00"
            })
        }),
        "TIME" => fixed::<8>(bytes).map(|b| clock_text(i64::from_be_bytes(b))),
        "TIMETZ" => pg_timetz(bytes),
        "INTERVAL" => pg_interval(bytes),
        _ if name.eq_ignore_ascii_case("citext") => utf8(bytes),
        _ if <String as Type<sqlx::Postgres>>::compatible(type_info) => utf8(bytes),
        _ => None,
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

fn utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

fn uuid_text(b: &[u8; 16]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&b[0..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

/// NUMERIC: base-10000 digits with a weight, a sign and a display scale.
fn pg_numeric(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader(bytes);
    let ndigits = usize::from(reader.u16()?);
    let weight = i32::from(reader.i16()?);
    let sign = reader.u16()?;
    let dscale = usize::from(reader.u16()?);
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let digit = reader.i16()?;
        if !(0..10_000).contains(&digit) {
            return None;
        }
        digits.push(digit);
    }
    match sign {
        0xC000 => return Some("NaN".to_string()),
        0xD000 => return Some("Infinity".to_string()),
        0xF000 => return Some("-Infinity".to_string()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        let _ = write!(text, "{}", digit(0));
        for i in 1..=weight {
            let _ = write!(text, "{:04}", digit(i));
            if text.len() > RENDER_LIMIT {
                return Some(text);
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while fraction.len() < dscale.min(RENDER_LIMIT) {
            let _ = write!(fraction, "{:04}", digit(i));
            i += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

/// 2000-01-01, PostgreSQL's epoch, counted in days from 0001-01-01 (day 1).
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn date_from_pg_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(PG_EPOCH_DAYS_FROM_CE)?)
}

/// DATE: days since 2000-01-01; the extremes are PostgreSQL's infinities.
fn pg_date(days: i32) -> Option<String> {
    match days {
        i32::MAX => Some("infinity".to_string()),
        i32::MIN => Some("-infinity".to_string()),
        _ => Some(date_from_pg_days(days)?.format("%Y-%m-%d").to_string()),
    }
}

/// TIMESTAMP: microseconds since 2000-01-01 00:00; the extremes are PostgreSQL's infinities.
fn pg_timestamp(micros: i64) -> Option<String> {
    match micros {
        i64::MAX => Some("infinity".to_string()),
        i64::MIN => Some("-infinity".to_string()),
        _ => {
            let days = i32::try_from(micros.div_euclid(MICROS_PER_DAY)).ok()?;
            let rest = micros.rem_euclid(MICROS_PER_DAY);
            let seconds = u32::try_from(rest / 1_000_000).ok()?;
            let nanos = u32::try_from(rest % 1_000_000).ok()? * 1_000;
            let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)?;
            let at = NaiveDateTime::new(date_from_pg_days(days)?, time);
            Some(at.format("%Y-%m-%d %H:%M:%S%.f").to_string())
        }
    }
}

/// A time of day (or a duration's clock part) from microseconds: `HH:MM:SS[.ffffff]`.
fn clock_text(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    let seconds = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    let mut text = format!(
        "{sign}{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// TIMETZ: microseconds since midnight, then the zone in seconds west of UTC.
fn pg_timetz(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader(bytes);
    let micros = reader.i64()?;
    let west = reader.i32()?;
    let east = i64::from(west).checked_neg()?;
    let sign = if east < 0 { '-' } else { '+' };
    let east = east.unsigned_abs();
    let mut text = format!("{}{sign}{:02}", clock_text(micros), east / 3600);
    if east % 3600 != 0 {
        let _ = write!(text, ":{:02}", east / 60 % 60);
    }
    if east % 60 != 0 {
        let _ = write!(text, ":{:02}", east % 60);
    }
    Some(text)
}

/// INTERVAL: microseconds, days and months, shown the way PostgreSQL shows them by default.
fn pg_interval(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader(bytes);
    let micros = reader.i64()?;
    let days = reader.i32()?;
    let months = reader.i32()?;
    let mut parts = Vec::new();
    let plural =
        |n: i32, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if months / 12 != 0 {
        parts.push(plural(months / 12, "year", "years"));
    }
    if months % 12 != 0 {
        parts.push(plural(months % 12, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        parts.push(clock_text(micros));
    }
    Some(parts.join(" "))
}

/// Why rendering an array stopped early.
enum ArrayStop {
    /// The text is long enough; the rest is cut.
    Full,
    /// The value is malformed or has an element type that is not rendered.
    Unreadable,
}

/// An array in binary format: dimensions, then each element with its length (-1 for NULL).
fn pg_array(element: &PgTypeInfo, bytes: &[u8]) -> Option<String> {
    let mut reader = Reader(bytes);
    let ndim = usize::try_from(reader.i32()?).ok()?;
    let _has_nulls = reader.i32()?;
    let _element_oid = reader.u32()?;
    if ndim == 0 {
        return Some("{}".to_string());
    }
    if ndim > 6 {
        return None;
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(usize::try_from(reader.i32()?).ok()?);
        let _lower_bound = reader.i32()?;
    }
    let mut text = String::new();
    match array_level(&mut reader, &dims, element, &mut text) {
        Ok(()) => Some(text),
        Err(ArrayStop::Full) => {
            text.push('…');
            Some(text)
        }
        Err(ArrayStop::Unreadable) => None,
    }
}

fn array_level(
    reader: &mut Reader<'_>,
    dims: &[usize],
    element: &PgTypeInfo,
    out: &mut String,
) -> Result<(), ArrayStop> {
    let Some((&count, inner)) = dims.split_first() else {
        return Err(ArrayStop::Unreadable);
    };
    out.push('{');
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        if out.len() > RENDER_LIMIT {
            return Err(ArrayStop::Full);
        }
        if inner.is_empty() {
            let len = reader.i32().ok_or(ArrayStop::Unreadable)?;
            if len < 0 {
                out.push_str("NULL");
                continue;
            }
            let len = usize::try_from(len).map_err(|_| ArrayStop::Unreadable)?;
            let bytes = reader.take(len).ok_or(ArrayStop::Unreadable)?;
            let text = pg_binary(element, bytes).ok_or(ArrayStop::Unreadable)?;
            push_array_element(out, &text);
        } else {
            array_level(reader, inner, element, out)?;
        }
    }
    out.push('}');
    Ok(())
}

/// An element as PostgreSQL writes it in an array: quoted when it would otherwise be ambiguous.
fn push_array_element(out: &mut String, text: &str) {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text
            .chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if needs_quotes {
        out.push('"');
        for c in text.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Reads big-endian numbers off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB

/// One MySQL/MariaDB cell (binary protocol values, decoded by sqlx per type).
pub(crate) fn mysql_cell(row: &MySqlRow, index: usize) -> Cell {
    guarded(|| {
        let Ok(value) = row.try_get_raw(index) else {
            return Cell::Unrendered("missing column".to_string());
        };
        if value.is_null() {
            return Cell::Null;
        }
        let type_info = value.type_info().into_owned();
        let name = type_info.name();
        let get_i64 = || row.try_get::<i64, _>(index).ok();
        let get_u64 = || row.try_get::<u64, _>(index).ok();
        let get_bytes = || row.try_get_unchecked::<Vec<u8>, _>(index).ok();
        let text = match name {
            // TINYINT(1): usually a flag, but it can hold any small number.
            "BOOLEAN" => get_i64().map(|n| match n {
                0 => "false".to_string(),
                1 => "true".to_string(),
                n => n.to_string(),
            }),
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                get_i64().map(|n| n.to_string())
            }
            _ if name.ends_with("UNSIGNED") => get_u64().map(|n| n.to_string()),
            "YEAR" => row
                .try_get::<u16, _>(index)
                .ok()
                .map(|n| n.to_string())
                .or_else(|| get_u64().map(|n| n.to_string())),
            "BIT" => get_u64()
                .map(|n| n.to_string())
                .or_else(|| get_bytes().map(|b| hex_text(&b))),
            "FLOAT" => row.try_get::<f32, _>(index).ok().map(|n| n.to_string()),
            "DOUBLE" => row.try_get::<f64, _>(index).ok().map(|n| n.to_string()),
            "DECIMAL" => row
                .try_get::<BigDecimal, _>(index)
                .ok()
                .map(|n| n.to_string()),
            "DATE" => row
                .try_get::<NaiveDate, _>(index)
                .ok()
                .map(|d| d.format("%Y-%m-%d").to_string()),
            "DATETIME" | "TIMESTAMP" => row
                .try_get::<NaiveDateTime, _>(index)
                .ok()
                .map(|d| d.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            "TIME" => row
                .try_get::<sqlx::mysql::types::MySqlTime, _>(index)
                .ok()
                .map(|t| t.to_string()),
            "JSON" => mysql_text(value),
            // The protocol marks text in a `_bin` collation (MariaDB's JSON is LONGTEXT
            // COLLATE utf8mb4_bin) the same as real binary, so readable UTF-8 shows as text.
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                get_bytes().map(|b| readable_text(&b).unwrap_or_else(|| hex_text(&b)))
            }
            "GEOMETRY" => get_bytes().map(|b| hex_text(&b)),
            _ => None,
        };
        let text = text.or_else(|| row.try_get::<String, _>(index).ok());
        cell_or(text, name)
    })
}

/// Bytes as text when they are UTF-8 without control characters (other than line breaks and
/// tabs); None when they look like binary data.
fn readable_text(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let readable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    readable.then(|| text.to_string())
}

/// A MySQL value sent as text (JSON columns), decoded without sqlx's type check.
fn mysql_text(value: sqlx::mysql::MySqlValueRef<'_>) -> Option<String> {
    <String as Decode<MySql>>::decode(value).ok()
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// One SQLite cell, by the value's own storage class (SQLite's columns have no fixed type); a
/// column declared BOOLEAN shows 0 and 1 as false and true.
pub(crate) fn sqlite_cell(row: &SqliteRow, index: usize) -> Cell {
    guarded(|| {
        let Ok(value) = row.try_get_raw(index) else {
            return Cell::Unrendered("missing column".to_string());
        };
        if value.is_null() {
            return Cell::Null;
        }
        let storage = value.type_info().name().to_string();
        let declared_bool = row
            .columns()
            .get(index)
            .is_some_and(|column| column.type_info().name() == "BOOLEAN");
        let text = match storage.as_str() {
            "INTEGER" => {
                row.try_get_unchecked::<i64, _>(index)
                    .ok()
                    .map(|n| match (declared_bool, n) {
                        (true, 0) => "false".to_string(),
                        (true, 1) => "true".to_string(),
                        (_, n) => n.to_string(),
                    })
            }
            "REAL" => row
                .try_get_unchecked::<f64, _>(index)
                .ok()
                .map(|n| n.to_string()),
            "BLOB" => row
                .try_get_unchecked::<Vec<u8>, _>(index)
                .ok()
                .map(|b| hex_text(&b)),
            _ => None,
        };
        let text = text.or_else(|| row.try_get_unchecked::<String, _>(index).ok());
        cell_or(text, &storage)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_digits_weight_and_scale() {
        // 12345.678: digits [1, 2345, 6780], weight 1, scale 3.
        let mut bytes = Vec::new();
        for part in [3u16, 1, 0, 3, 1, 2345, 6780] {
            bytes.extend_from_slice(&part.to_be_bytes());
        }
        assert_eq!(pg_numeric(&bytes).as_deref(), Some("12345.678"));
        // -0.05: digits [500], weight -1, scale 2.
        let mut bytes = Vec::new();
        for part in [1u16, 0xFFFF, 0x4000, 2, 500] {
            bytes.extend_from_slice(&part.to_be_bytes());
        }
        assert_eq!(pg_numeric(&bytes).as_deref(), Some("-0.05"));
        let nan = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(pg_numeric(&nan).as_deref(), Some("NaN"));
        assert_eq!(pg_numeric(&[1, 2]), None);
    }

    #[test]
    fn dates_and_timestamps_never_overflow() {
        assert_eq!(pg_date(0).as_deref(), Some("2000-01-01"));
        assert_eq!(pg_date(i32::MAX).as_deref(), Some("infinity"));
        assert_eq!(pg_date(i32::MAX - 1), None);
        assert_eq!(pg_timestamp(i64::MIN).as_deref(), Some("-infinity"));
        assert_eq!(pg_timestamp(i64::MAX - 1), None);
        assert_eq!(
            pg_timestamp(86_400_000_000 + 1_500_000).as_deref(),
            Some("2000-01-02 00:00:01.500")
        );
    }

    #[test]
    fn intervals_and_times_read_like_postgres() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(3_723_000_000i64).to_be_bytes());
        bytes.extend_from_slice(&2i32.to_be_bytes());
        bytes.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            pg_interval(&bytes).as_deref(),
            Some("1 year 2 mons 2 days 01:02:03")
        );
        assert_eq!(clock_text(45_296_250_000), "12:34:56.25");
    }

    #[test]
    fn long_binary_values_are_cut_before_formatting() {
        let text = hex_text(&[0xAB; 1000]);
        assert!(text.starts_with("\\xabab"));
        assert!(text.ends_with('…'));
        assert!(text.len() < 200);
    }
}
