//! Names on the disc: the ISO 9660 volume id (d-characters) derived from a case
//! number, the Joliet volume label, and predictable shortening of file names that
//! are too long for Joliet (`docs/disc.md` § "Names").

use crate::hash::sha256;
use crate::to_hex;

/// Longest Joliet leaf name xorriso writes with `joliet_long_names`: 103 UTF-16 units.
pub const JOLIET_MAX_UNITS: usize = 103;
/// Longest ISO 9660 volume id: 32 d-characters.
pub const VOLID_MAX: usize = 32;
/// Longest Joliet volume id: 16 UCS-2 characters (32 bytes).
pub const JOLIET_VOLID_MAX: usize = 16;

/// The ISO 9660 volume id of disc `disc` of `discs` for `case_number`, in
/// d-characters only (`A–Z 0–9 _`, at most 32):
/// `FQ_` + the ASCII letter/digit runs of the case number (upper-case) joined by
/// `_`, + `_` + `{disc}OF{discs}`. The case part is cut from the left end of the
/// runs kept so the whole fits 32 characters; a case number with no ASCII letter or
/// digit gives `FQ_CASE{dispute id}`.
///
/// `(2026)枫调字第00001号`, disc 1 of 2 → `FQ_2026_00001_1OF2`.
pub fn volume_id(case_number: &str, dispute_id: i64, disc: usize, discs: usize) -> String {
    let runs: Vec<String> = case_number
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_uppercase())
        .collect();
    let case = if runs.is_empty() { format!("CASE{dispute_id}") } else { runs.join("_") };
    let tail = format!("_{disc}OF{discs}");
    let room = VOLID_MAX - 3 - tail.len();
    let case: String = if case.len() > room { case[case.len() - room..].trim_start_matches('_').to_owned() } else { case };
    format!("FQ_{case}{tail}")
}

/// The Joliet volume label: the case number as is, cut to 16 UTF-16 units
/// (`(2026)枫调字第00001号` is exactly 16). Characters outside the BMP are replaced
/// by `_` (UCS-2).
pub fn joliet_label(case_number: &str) -> String {
    case_number
        .chars()
        .map(|c| if (c as u32) > 0xFFFF { '_' } else { c })
        .take(JOLIET_VOLID_MAX)
        .collect()
}

/// Number of UTF-16 code units of `s`.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Shortens one path component (a file or folder name) to at most 103 UTF-16
/// units, predictably: names that fit are kept. A longer name keeps its extension
/// (the part from the last `.`, if that is at most 10 ASCII alphanumerics after the
/// dot) and as much of the stem as fits before `~` + the first 8 hex digits of the
/// SHA-256 of the whole original name (UTF-8). Characters are never split.
///
/// `"很长…的名字.mp4"` (120 characters) → `"很长…~1a2b3c4d.mp4"` (103 units).
pub fn shorten_component(name: &str) -> String {
    if utf16_len(name) <= JOLIET_MAX_UNITS {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i)
            if i > 0 && name.len() - i <= 11 && name[i + 1..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (&name[..i], &name[i..])
        }
        _ => (name, ""),
    };
    let tag = format!("~{}", &to_hex(&sha256(name.as_bytes()))[..8]);
    let budget = JOLIET_MAX_UNITS - tag.len() - ext.len();
    let mut kept = String::new();
    let mut units = 0;
    for c in stem.chars() {
        if units + c.len_utf16() > budget {
            break;
        }
        units += c.len_utf16();
        kept.push(c);
    }
    format!("{kept}{tag}{ext}")
}

/// [`shorten_component`] applied to every `/`-separated component.
pub fn shorten_path(path: &str) -> String {
    path.split('/').map(shorten_component).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids() {
        assert_eq!(volume_id("(2026)枫调字第00001号", 1, 1, 2), "FQ_2026_00001_1OF2");
        assert_eq!(volume_id("枫调字号", 42, 3, 10), "FQ_CASE42_3OF10");
        let long = volume_id("abc-1234567890-1234567890-1234567890", 1, 12, 12);
        assert!(long.len() <= 32, "{long}");
        assert!(long.ends_with("_12OF12"), "{long}");
        for v in [long, volume_id("(2026)枫调字第00001号", 1, 1, 1)] {
            assert!(v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "{v}");
        }
    }

    #[test]
    fn joliet_labels() {
        assert_eq!(joliet_label("(2026)枫调字第00001号"), "(2026)枫调字第00001号");
        assert_eq!(utf16_len(&joliet_label(&"调".repeat(40))), 16);
    }

    #[test]
    fn shortening_is_predictable() {
        assert_eq!(shorten_component("短名.mp4"), "短名.mp4");
        let long = format!("{}.mp4", "很长的文件名".repeat(20));
        let s = shorten_component(&long);
        assert_eq!(utf16_len(&s), JOLIET_MAX_UNITS);
        assert!(s.ends_with(".mp4") && s.contains('~'), "{s}");
        assert_eq!(s, shorten_component(&long));
        let other = format!("{}.mp4", "很长的文件名".repeat(19) + "另");
        assert_ne!(shorten_component(&other), s);
        // Surrogate pairs are not split.
        let emoji = "😀".repeat(60);
        assert!(utf16_len(&shorten_component(&emoji)) <= JOLIET_MAX_UNITS);
    }
}
