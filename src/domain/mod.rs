//! The domain: validated callbacks and the recordings they fold into. Nothing here knows
//! about tonic or hyper; the generated message types are plain prost structs.

pub mod callback;
pub mod recording;
pub mod time;

pub use callback::{Callback, EventType};
pub use recording::{Recording, RecordingState};

use crate::error::Error;

/// Refuses text the stores cannot hold alike: PostgreSQL's `text` cannot hold U+0000, so
/// a string with one is `field: must not contain a NUL character (U+0000)` on every
/// store, rather than an error at the store that a caller would retry forever.
///
/// # Errors
/// `InvalidArgument` naming `field` when `value` contains U+0000.
pub fn check_text(field: &str, value: &str) -> Result<(), Error> {
    if value.contains('\0') {
        Err(Error::invalid(
            field,
            "must not contain a NUL character (U+0000)",
        ))
    } else {
        Ok(())
    }
}

/// [`check_text`] for each `(field, value)`, in order: the first refusal.
///
/// # Errors
/// As [`check_text`].
pub fn check_texts(fields: &[(&str, &str)]) -> Result<(), Error> {
    fields
        .iter()
        .try_for_each(|(field, value)| check_text(field, value))
}
