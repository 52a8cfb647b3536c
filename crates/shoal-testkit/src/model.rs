//! A proptest state machine checking a store against a `BTreeMap` reference model. (Being written.)
