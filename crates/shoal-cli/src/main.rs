//! The `shoal` command-line tool. (Being written.)

fn main() {}
