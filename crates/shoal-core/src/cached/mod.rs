//! The hot-session cache wrapper `Cached<S>`. (Being written.)
