//! Cross-instance cache invalidation over Redis pub/sub. (Being written.)
