//! Spawns real `redis-server` processes on free loopback ports for tests. (Being written.)
