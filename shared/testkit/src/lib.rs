//! Switchyard's test kit. It owns [`MockProvider`], a mock OpenAI-compatible
//! provider, and [`MockAnthropic`], a mock of the Anthropic Messages API, both
//! served over real HTTP with behaviours that inject faults (error statuses,
//! slow first bytes, garbage bodies, dropped streams), so end-to-end and
//! data-plane tests exercise real clients and parsers.
//!
//! This crate stands in for the outside world, so it must never depend on the
//! control plane or the data plane: it only speaks the public wire format.

mod anthropic;
mod behavior;
mod mock_provider;
mod ollama;
mod openai;
pub mod pki;
mod routes;
mod sse;

#[cfg(test)]
mod tests;

pub use anthropic::{MockAnthropic, TOOL_PREAMBLE};
pub use behavior::Behavior;
pub use mock_provider::{MockProvider, ReceivedRequest};
pub use ollama::MockOllama;
