//! The one integration-test binary (each test binary links the whole kube stack).

mod admission;
mod bench_smoke;
mod chain;
mod chart;
mod controller;
mod crd;
mod dcs_writes;
mod docs;
mod fake_apiserver;
mod hostile;
mod hostile_process;
mod iam;
mod identity;
mod lifecycle;
mod model;
mod operations;
mod properties;
mod query;
mod resilience;
mod scale;
mod signing;
mod sim_support;
mod sim_write;
mod simulator;
