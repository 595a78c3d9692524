//! recording-events: takes Huawei Cloud Live recording callbacks (`vodCallBack`), stores
//! each one durably and once, folds them into recordings, and serves those over gRPC.
//!
//! A tour, from the outside in:
//! - [`startup`] builds the [`startup::Application`] from [`config::Settings`] and runs
//!   both fronts until shutdown.
//! - [`grpc`] (tonic) and [`http`] (hyper, Huawei's JSON) are thin fronts over the same
//!   [`service::RecordingService`]; [`json`] reads the callback's JSON; [`auth`] checks
//!   their credentials, [`oauth`] and [`token`] issue access tokens, and [`credentials`]
//!   resolves them at start (generating and keeping what is not configured).
//! - [`domain`] holds validated callbacks and the recording fold; no transport in it.
//! - [`tls`] serves both fronts over TLS when given a certificate (reloaded on SIGHUP),
//!   and asks gRPC clients for theirs with `--tls-client-ca`.
//! - [`store`] is the [`store::Store`] trait and its backends, SQLite (group commit) and
//!   PostgreSQL (several replicas).
//! - [`watch`] streams stored events, then live ones, without gap or duplicate.
//! - [`retention`] removes old events and their recordings (`--retention`).
//! - [`error`] is the one error type and its code table for both fronts.
//! - [`metrics`] exposes Prometheus metrics; [`grpc_metrics`] counts the gRPC calls.
//! - [`readiness`] is what `/readyz` and gRPC health report, the same on both fronts.
//! - [`request_id`] gives every answer of both fronts an `x-request-id`, and the request's
//!   log lines the same id.
//! - [`opening`] bounds the connections of both ports and a new one's first bytes;
//!   [`open_streams`] the gRPC streams open without a token.
//! - [`backup`] is the `backup` subcommand: a consistent copy of a SQLite store; [`migrate`]
//!   the `migrate` subcommand: the schema migrations alone.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backup;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod grpc_metrics;
pub mod http;
pub mod json;
pub mod metrics;
pub mod migrate;
pub mod oauth;
pub mod open_streams;
pub mod opening;
pub mod pb;
pub mod readiness;
pub mod request_id;
pub mod retention;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod watch;
