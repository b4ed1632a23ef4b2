//! `kiki up` on one machine: a private Redis (or a three-master cluster) when none is
//! configured, and with `--gateways/--workers` each role as a process of its own.

pub mod redis_server;
pub mod topology;
