//! The resilience wrapper `Resilient<P, F>`: deadlines, retries, circuit breaker, fallback. (Being written.)
