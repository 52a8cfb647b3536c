//! `shoal demo`: Shoal's main job, end to end, with zero set-up.
//!
//! Starts, in this process and on loopback, a small built-in MCP server ([`upstream`]), two
//! proxy instances sharing the configured store ([`fleet`]; the embedded memory store by
//! default) and a scripted MCP client ([`client`]) that moves one session between the two
//! instances ([`script`]): initialize on A, a tool call on B, a progress stream cut on A and
//! resumed on B with every event exactly once, a delete that holds on both. After each step it
//! prints what the store holds ([`store_view`]). Exit 0 when every check held.

mod client;
mod fleet;
mod script;
mod store_view;
mod upstream;

pub(crate) use script::run;
