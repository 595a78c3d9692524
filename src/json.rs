//! The callback's JSON: [`parse_callback`], and the tolerant decoders of
//! `VodCallBackRequest`'s fields (wired to them by build.rs).
//!
//! Huawei's API table and its real callbacks disagree: `width`/`height` are typed String in
//! the table and numbers in the example, and any optional field may come as `null`. We
//! accept both spellings of a number and `null` everywhere rather than lose a callback.
//! Range checks (negative numbers, end before start) are the domain's, not these.

use std::fmt;

use prost_types::Timestamp;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::domain::time;
use crate::error::Error;
use crate::pb::v1::VodCallBackRequest;

/// A string, with `null` read as absent (empty).
///
/// # Errors
/// When the value is neither a string nor `null`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// An integer given as a JSON number or a numeric string (`1920`, `"1920"`, `1920.0`,
/// `"1920.0"`); `null` and `""` are absent.
///
/// # Errors
/// When the value is not an integer (fractions are refused) or does not fit in 64 bits.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(IntVisitor { round: false })
}

/// A length in whole seconds, as [`int`], except that a fraction (`3599.96`, as a media
/// duration may be measured) is rounded to the nearest second rather than refused: the
/// callback is not lost for it, and the stored raw body keeps the exact value. A negative
/// fraction stays negative (and is refused as such by the domain).
///
/// # Errors
/// As [`int`], but for fractions.
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(IntVisitor { round: true })
}

/// Decodes an integer; with `round`, a fraction is rounded to the nearest integer.
struct IntVisitor {
    round: bool,
}

/// Beyond this a float no longer holds every integer exactly.
const FLOAT_INTEGERS: f64 = 9.0e15;

impl IntVisitor {
    /// The integer `v` stands for, if any.
    fn of_float(&self, v: f64) -> Option<i64> {
        let whole = if v.fract() == 0.0 {
            v
        } else if self.round {
            // Away from zero, so that -0.4 stays below zero.
            if v < 0.0 { v.floor() } else { v.round() }
        } else {
            return None;
        };
        (whole.abs() < FLOAT_INTEGERS).then_some(whole as i64)
    }
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.round {
            f.write_str("a number of seconds or a numeric string")
        } else {
            f.write_str("an integer or a numeric string")
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("{v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `3600.0` is an integer written as a float; `3600.5` is not an integer.
        match self.of_float(v) {
            Some(n) => Ok(Some(n)),
            None => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        if let Ok(n) = v.parse::<i64>() {
            return Ok(Some(n));
        }
        // A number written with a point (`"1920.0"`), as a float is: not `"inf"` or `"NaN"`.
        v.parse::<f64>()
            .ok()
            .filter(|f| {
                f.is_finite()
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            })
            .and_then(|f| self.of_float(f))
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An RFC 3339 time (any offset, optional fraction); `null` and `""` are absent.
///
/// # Errors
/// When the value is not a string or not an RFC 3339 time.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => time::parse_rfc3339(&s)
            .map(|t| Some(time::to_timestamp(t)))
            .map_err(de::Error::custom),
    }
}

/// The body without a leading UTF-8 byte order mark, which some HTTP clients put before
/// JSON (RFC 8259 lets a parser ignore it; refusing it would lose the callback).
pub fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// Parses the body straight into the generated request type, naming the field at fault.
/// A leading byte order mark is skipped ([`without_bom`]).
pub fn parse_callback(body: &[u8]) -> Result<VodCallBackRequest, Error> {
    let body = without_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "is empty; expected a JSON object"));
    }
    // serde would read a JSON array as the struct's fields in order: only objects count.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let what = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => format!("is {}; expected a JSON object", json_kind(&value)),
            Err(e) => e.to_string(),
        };
        return Err(Error::invalid("body", what));
    }
    // The common case without the cost of tracking the path; a failure is parsed again,
    // with the path, to name the field at fault.
    if let Ok(request) = serde_json::from_slice(body) {
        return Ok(request);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let request = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_path_to_error says `?` where the fault is between fields (a trailing
        // comma, a missing `}`, a key that is not a string): that is the body's.
        let path = e.path().to_string();
        let field = match path.as_str() {
            "" | "." | "?" => "body",
            path => path,
        };
        Error::invalid(field, e.inner())
    })?;
    de.end().map_err(|e| Error::invalid("body", e))?;
    Ok(request)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse_callback(br#"{"app": 5}"#).unwrap_err();
        assert!(
            e.message().starts_with("app: invalid type: integer `5`"),
            "{}",
            e.message()
        );
        let e = parse_callback(br#"{"width": "wide"}"#).unwrap_err();
        assert!(
            e.message().starts_with("width: invalid value"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn tolerant_variants_parse() {
        let r = parse_callback(
            br#"{"width":"854","heigh":480,"file_size":"33406499","stream":null,"x":1,"record_duration":403.0}"#,
        )
        .unwrap();
        assert_eq!(
            (r.width, r.height, r.file_size),
            (Some(854), Some(480), Some(33_406_499))
        );
        assert_eq!(r.record_duration, Some(403));
        assert_eq!(r.stream, "");
    }

    #[test]
    fn integers_written_with_a_point_parse_and_durations_are_rounded() {
        let r =
            parse_callback(br#"{"width":"1920.0","height":1080.0,"file_size":" 7e2 "}"#).unwrap();
        assert_eq!(
            (r.width, r.height, r.file_size),
            (Some(1920), Some(1080), Some(700))
        );
        for (duration, seconds) in [
            ("3599.96", 3600),
            ("\"3599.4\"", 3599),
            ("0.5", 1),
            ("403", 403),
            ("-0.4", -1),
        ] {
            let body = format!(r#"{{"record_duration":{duration}}}"#);
            let r = parse_callback(body.as_bytes()).unwrap();
            assert_eq!(r.record_duration, Some(seconds), "{duration}");
        }
        // Only the duration is rounded: a fraction of a byte or a pixel is refused.
        for (body, message) in [
            (
                &br#"{"width":"1920.5"}"#[..],
                "width: invalid value: string \"1920.5\"",
            ),
            (
                br#"{"file_size":1.5}"#,
                "file_size: invalid value: floating point `1.5`",
            ),
            (
                br#"{"width":"inf"}"#,
                "width: invalid value: string \"inf\"",
            ),
            (
                br#"{"record_duration":"NaN"}"#,
                "record_duration: invalid value: string \"NaN\", expected a number of seconds",
            ),
            (
                br#"{"record_duration":1e300}"#,
                "record_duration: invalid value: floating point",
            ),
        ] {
            let e = parse_callback(body).unwrap_err();
            assert!(e.message().starts_with(message), "{}", e.message());
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped_once() {
        let r = parse_callback(b"\xEF\xBB\xBF{\"app\":\"a\"}").unwrap();
        assert_eq!(r.app, "a");
        assert_eq!(without_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(without_bom(b"{}"), b"{}");
        // Only one mark, and only at the start.
        let e = parse_callback(b"\xEF\xBB\xBF\xEF\xBB\xBF{}").unwrap_err();
        assert!(e.message().starts_with("body:"), "{}", e.message());
    }

    #[test]
    fn trailing_garbage_and_non_objects_are_body_errors() {
        assert!(
            parse_callback(b"{} x")
                .unwrap_err()
                .message()
                .starts_with("body:")
        );
        assert!(
            parse_callback(b"[1]")
                .unwrap_err()
                .message()
                .starts_with("body:")
        );
        assert!(
            parse_callback(b"  ")
                .unwrap_err()
                .message()
                .starts_with("body: is empty")
        );
    }

    #[test]
    fn faults_between_fields_are_body_errors() {
        for (body, message) in [
            (
                &br#"{"app":"a",}"#[..],
                "body: trailing comma at line 1 column 12",
            ),
            (br#"{"app":"a" "b":1}"#, "body: expected `,` or `}`"),
            (br#"{"app":"a","#, "body: EOF while parsing a value"),
            (br#"{1:2}"#, "body: key must be a string"),
            (br#"{"a\q":1}"#, "body: invalid escape"),
        ] {
            let e = parse_callback(body).unwrap_err();
            assert!(e.message().starts_with(message), "{}", e.message());
        }
        // A fault inside a field's value still names the field.
        let e = parse_callback(br#"{"app":}"#).unwrap_err();
        assert!(
            e.message().starts_with("app: expected value"),
            "{}",
            e.message()
        );
    }
}
