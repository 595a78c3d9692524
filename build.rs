//! Compiles `proto/` to Rust with a pure-Rust protobuf compiler (protox): no system
//! `protoc` is needed. Also writes the encoded descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO: &str = "proto/isdp/recording/v1/recording_event.proto";
const REQUEST: &str = ".isdp.recording.v1.VodCallBackRequest";

/// Fields of `VodCallBackRequest` and the tolerant JSON decoder each one uses (see
/// `src/json.rs`): Huawei's documentation and its real callbacks disagree on types.
const STRING_FIELDS: &[&str] = &[
    "project_id",
    "publish_domain",
    "event_type",
    "app",
    "stream",
    "record_format",
    "download_url",
    "asset_id",
    "play_url",
    "obs_location",
    "obs_bucket",
    "obs_object",
    "task_id",
    "job_id",
    "auth_sign",
];
const INT_FIELDS: &[&str] = &["file_size", "width", "height", "auth_timestamp"];
const TIME_FIELDS: &[&str] = &["start_time", "end_time"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("recording_event_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    let mut config = tonic_prost_build::configure()
        .type_attribute(REQUEST, "#[derive(serde::Deserialize)] #[serde(default)]");
    for field in STRING_FIELDS {
        config = config.field_attribute(
            format!("{REQUEST}.{field}"),
            r#"#[serde(deserialize_with = "crate::json::string")]"#,
        );
    }
    for field in INT_FIELDS {
        config = config.field_attribute(
            format!("{REQUEST}.{field}"),
            r#"#[serde(deserialize_with = "crate::json::int")]"#,
        );
    }
    // A length in seconds may come with a fraction (a media duration): rounded.
    config = config.field_attribute(
        format!("{REQUEST}.record_duration"),
        r#"#[serde(deserialize_with = "crate::json::seconds")]"#,
    );
    for field in TIME_FIELDS {
        config = config.field_attribute(
            format!("{REQUEST}.{field}"),
            r#"#[serde(deserialize_with = "crate::json::time")]"#,
        );
    }
    config = config.field_attribute(format!("{REQUEST}.height"), r#"#[serde(alias = "heigh")]"#);
    config.compile_fds(fds)?;
    Ok(())
}
