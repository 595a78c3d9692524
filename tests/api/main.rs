//! Integration tests: the real server on 127.0.0.1:0, real HTTP and tonic clients, a real
//! SQLite file in a temporary directory.

mod auth;
mod backup;
mod binary;
mod callback_grpc;
mod callback_http;
mod connections;
mod database_stalls;
mod db_proxy;
mod durability;
mod helpers;
mod idempotency;
mod lifecycles;
mod oauth;
mod readiness;
mod recordings;
mod replicas;
mod retention;
mod spans;
mod store;
mod tls;
mod watch;
