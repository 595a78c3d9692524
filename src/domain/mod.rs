//! The domain: validated callbacks and the recordings they fold into. Nothing here knows
//! about tonic or hyper; the generated message types are plain prost structs.

pub mod callback;
pub mod recording;
pub mod time;

pub use callback::{Callback, EventType};
pub use recording::{Recording, RecordingState};
