//! The one integration-test binary (each test binary links the whole kube stack).

mod model;
mod properties;
mod signing;
