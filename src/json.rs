//! Tolerant JSON decoders for `VodCallBackRequest` (wired to its fields by build.rs).
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

/// A string, with `null` read as absent (empty).
///
/// # Errors
/// When the value is neither a string nor `null`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// An integer given as a JSON number or a numeric string; `null` and `""` are absent.
///
/// # Errors
/// When the value is not an integer (fractions are refused) or does not fit in 64 bits.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(IntVisitor)
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a numeric string")
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
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Some(v as i64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<i64>()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
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
