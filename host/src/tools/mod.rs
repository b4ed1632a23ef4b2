//! The operators' tools, apart from the serving roles: `kiki check`, `kiki bench load`,
//! `kiki transcribe`, their HTTP client, and word error rates for the tests and benchmarks.

pub mod check;
pub mod eval;
pub mod http_client;
pub mod load;
pub mod transcribe;
