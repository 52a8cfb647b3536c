//! A fault-injecting TCP proxy and process fault helpers for tests. (Being written.)
