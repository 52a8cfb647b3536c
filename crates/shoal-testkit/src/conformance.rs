//! The SessionStore conformance suite. (Being written.)
