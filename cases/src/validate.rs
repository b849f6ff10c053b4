//! Input checks shared by the API and the command line. Every failure names its field.

use crate::error::CasesError;
use chrono::NaiveDate;

/// Checks a text field: `min..=max` characters, no NUL or other control characters
/// (newlines and tabs allowed when `multiline`). Returns it trimmed.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, CasesError> {
    let v = value.trim();
    if v.contains('\0') {
        return Err(CasesError::invalid(
            field,
            "must not contain NUL characters",
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(CasesError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    // Count characters only up to the limit, so a 10 MB string is not walked twice.
    let n = v.chars().take(max + 1).count();
    if n < min {
        return Err(CasesError::invalid(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must have at least {min} characters")
            },
        ));
    }
    if n > max {
        return Err(CasesError::invalid(
            field,
            format!("must have at most {max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// Checks an optional text field as [`text`]; empty strings become `None`.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn opt_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, CasesError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, 1, max, false).map(Some),
    }
}

/// Checks that `value` is one of `allowed`.
///
/// # Errors
/// [`CasesError::Validation`] naming `field` and listing the allowed values.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<String, CasesError> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(CasesError::invalid(
            field,
            format!("must be one of: {}", allowed.join(", ")),
        ))
    }
}

/// Checks a citizen identity number (公民身份号码, GB 11643-1999): 18 characters, a
/// 6-digit address code, an 8-digit birth date `YYYYMMDD` that exists, a 3-digit
/// sequence and a check character (`0`–`9` or `X`) by ISO 7064 MOD 11-2. A lower-case
/// `x` is accepted; the result is upper-cased.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`: the wrong length or characters, a birth
/// date that does not exist, or a check character that does not match.
pub fn citizen_id(field: &str, value: &str) -> Result<String, CasesError> {
    let v = value.trim().to_ascii_uppercase();
    let b = v.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
        return Err(CasesError::invalid(field, "must be an 18-character ID number: 17 digits, then a digit or X"));
    }
    if NaiveDate::parse_from_str(&v[6..14], "%Y%m%d").is_err() {
        return Err(CasesError::invalid(field, "characters 7–14 must be a birth date YYYYMMDD"));
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    if b"10X98765432"[(sum % 11) as usize] != b[17] {
        return Err(CasesError::invalid(field, "check character does not match (GB 11643-1999): a digit is mistyped"));
    }
    Ok(v)
}

/// Parses a `YYYY-MM-DD` date.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn date(field: &str, value: &str) -> Result<NaiveDate, CasesError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| CasesError::invalid(field, "must be a date YYYY-MM-DD"))
}

/// Parses an RFC 3339 time (e.g. `2026-05-01T09:30:00+08:00`) into Unix seconds.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn time(field: &str, value: &str) -> Result<i64, CasesError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp())
        .map_err(|_| {
            CasesError::invalid(
                field,
                "must be an RFC 3339 time such as 2026-05-01T09:30:00+08:00",
            )
        })
}

/// Checks an integer range.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, CasesError> {
    if value < min || value > max {
        Err(CasesError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ))
    } else {
        Ok(value)
    }
}

/// Checks a lower-case hex SHA-256 value (64 characters).
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn sha256_hex(field: &str, value: &str) -> Result<String, CasesError> {
    let v = value.trim().to_ascii_lowercase();
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(CasesError::invalid(
            field,
            "must be a SHA-256 value: 64 hex digits",
        ))
    }
}

/// Checks a relative path without `..`, absolute parts or NUL.
///
/// # Errors
/// [`CasesError::Validation`] naming `field`.
pub fn relative_path(field: &str, value: &str) -> Result<String, CasesError> {
    let v = text(field, value, 1, 1024, false)?;
    let p = std::path::Path::new(&v);
    let ok = p.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !ok || p.is_absolute() {
        return Err(CasesError::invalid(
            field,
            "must be a relative path inside the recordings folder",
        ));
    }
    Ok(v)
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_ids() {
        assert_eq!(citizen_id("f", " 11010119900307109x ").unwrap(), "11010119900307109X");
        assert_eq!(citizen_id("f", "330681199001011237").unwrap(), "330681199001011237");
        for bad in ["abc", "123", "330681199001011234", "330681199002301237", "33068119900101123A", "3306811990010112377"] {
            let e = citizen_id("parties[0].id_number", bad).unwrap_err();
            assert!(e.to_string().contains("parties[0].id_number"), "{bad}: {e}");
        }
    }

    #[test]
    fn text_rules() {
        assert_eq!(text("f", "  a b ", 1, 10, false).unwrap(), "a b");
        assert!(text("f", "", 1, 10, false).is_err());
        assert!(text("f", "a\0b", 1, 10, false).is_err());
        assert!(text("f", "a\nb", 1, 10, false).is_err());
        assert!(text("f", "a\nb", 1, 10, true).is_ok());
        let e = text("name", &"x".repeat(11), 1, 10, false).unwrap_err();
        assert!(matches!(e, CasesError::Validation { ref field, .. } if field == "name"));
        assert_eq!(text("f", "张三", 1, 2, false).unwrap(), "张三");
    }

    #[test]
    fn paths_and_hashes() {
        assert!(relative_path("p", "2026/a.mp4").is_ok());
        assert!(relative_path("p", "../etc/passwd").is_err());
        assert!(relative_path("p", "/etc/passwd").is_err());
        assert!(sha256_hex("h", &"A".repeat(64)).is_ok());
        assert!(sha256_hex("h", "abc").is_err());
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
