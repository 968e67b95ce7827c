//! smolhttpd: an embedded HTTP server on the smoltcp TCP/IP stack.
//!
//! The core (this library) is `no_std` without the `std` feature and never allocates, reads a
//! clock or owns a device: [`Server::poll`] is driven from outside with the time and a
//! `smoltcp::phy::Device`, like `smoltcp::iface::Interface::poll`. It serves the file image
//! baked in by `build.rs` ([`image`]) and a small group chat ([`chat`]) from a fixed array of
//! [`config::SLOTS`] connection slots.
//!
//! Layers, bottom up: [`gate`] (holds off SYNs no slot can take) -> [`http`] (request heads) ->
//! [`image`] / [`chat`] / [`json`] (what is served) -> `route` (request to reply) ->
//! [`server`] (slots and their state machine). The std-only shell (TAP device, CLI) lives in
//! `tap` and the binaries.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

pub mod chat;
pub mod config;
pub mod gate;
pub mod http;
pub mod image;
pub mod json;
mod route;
pub mod server;
#[cfg(feature = "std")]
pub mod tap;

pub use config::{Config, SLOTS};
pub use server::Server;
