//! Code generated from `proto/` by build.rs, and the descriptor set served by reflection.

/// Package `isdp.recording.v1`: the `RecordingEvent` service and its messages.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("isdp.recording.v1");
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/recording_event_descriptor.bin"));
