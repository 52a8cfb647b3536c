//! # shoal-proxy
//!
//! An MCP Streamable HTTP reverse proxy on top of any `SessionStore`. (Being written.)
