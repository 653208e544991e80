//! What the emulators under `tests/` (GKE, DOKS, Cloudflare, the fault proxy in front of moto)
//! share, so that none writes it again:
//!
//! - [`Server`]: one loopback HTTP/1.1 server. It binds `127.0.0.1` only (nothing here talks
//!   to the network), serves a handler, closes a connection without an answer when the handler
//!   says the answer is [`Dropped`] (a lost answer, a process that died mid-call), and stops,
//!   closing every open connection, when dropped.
//! - [`FaultPlan`] and [`Faults`]: one description of the faults an emulator injects (rates of
//!   throttling, server errors and lost answers drawn from a seeded generator; "die after N
//!   mutations"; and rules that fail the Nth call of a route with a status, a delay or a
//!   reset), and the state that draws them. Each emulator shapes the answer (its service's
//!   error body); the plan decides which request gets which fault.

mod faults;
mod server;

pub use faults::{After, Before, Calls, Draws, Effect, FaultPlan, Faults, Rule};
pub use server::{Dropped, Server};
