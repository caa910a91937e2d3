//! dcs-operator: a Kubernetes operator for Huawei Cloud Distributed Cache Service instances.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod connection_secret;
pub mod controller;
pub mod crd;
pub mod dcs;
pub mod duration;
pub mod intern;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod plan;
pub mod query;
pub mod run;
pub mod server;
pub mod simulate;
pub mod supervise;
