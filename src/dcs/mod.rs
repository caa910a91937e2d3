//! Everything that talks to the Huawei Cloud DCS API, or pretends to be it.

pub mod bounded;
pub mod chain;
pub mod client;
pub mod credentials;
pub mod error;
pub mod iam;
pub mod model;
pub mod signer;
pub mod sim;
pub mod writes;

pub use client::{ClientConfig, DcsClient, Endpoint};
pub use credentials::{Credentials, CredentialsError, SecretString};
pub use error::{ApiError, DcsError};
pub use iam::{AssumeAgency, IamClient, IamError, TemporaryCredentials};
pub use model::{DcsStatus, Instance, InstanceList, StatusClass};
