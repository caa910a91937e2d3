//! `dcs-operator query`: one ShowInstance call, printed as the API's own object,
//! with an exit code per error class so scripts can tell problems apart.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::{OutputFormat, QueryArgs};
use crate::clock::SystemClock;
use crate::dcs::{ClientConfig, Credentials, DcsClient, DcsError, Endpoint};

/// Exit codes of `dcs-operator query`, documented in docs/dcs-api.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 2;
    pub const INSTANCE_NOT_FOUND: i32 = 3;
    pub const AUTH: i32 = 4;
    pub const THROTTLED: i32 = 5;
    pub const UNAVAILABLE: i32 = 6;
    pub const REFUSED: i32 = 7;
    pub const DECODE: i32 = 8;
}

pub fn exit_code(error: &DcsError) -> i32 {
    match error {
        e if e.is_instance_not_found() => exit::INSTANCE_NOT_FOUND,
        // A request that cannot be built comes from the credentials given.
        DcsError::Unauthorized(_) | DcsError::Forbidden(_) | DcsError::Unsendable { .. } => {
            exit::AUTH
        }
        DcsError::Throttled { .. } => exit::THROTTLED,
        DcsError::Server(_) | DcsError::Transport { .. } => exit::UNAVAILABLE,
        DcsError::NotFound(_) | DcsError::Client(_) => exit::REFUSED,
        DcsError::Decode { .. } => exit::DECODE,
    }
}

/// The error as printed on standard output (standard error gets one sentence).
#[derive(Debug, Serialize)]
struct ErrorReport<'a> {
    error: ErrorFields<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorFields<'a> {
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    error_msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

fn print<T: Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &T,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)
        }
        OutputFormat::Yaml => {
            let text = serde_yaml::to_string(value).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())
        }
    }
}

/// Runs the query; returns the process exit code. `env` reads environment variables.
pub async fn run(
    args: &QueryArgs,
    env: impl Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match query(args, env, out, err).await {
        Ok(code) => code,
        Err(io) => {
            let _ = writeln!(err, "error: could not write the answer: {io}");
            1
        }
    }
}

async fn query(
    args: &QueryArgs,
    env: impl Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let endpoint = match (&args.region, &args.endpoint) {
        (Some(region), None) => Endpoint::for_region(region),
        (None, Some(url)) => Endpoint::parse(url),
        _ => {
            writeln!(err, "error: give exactly one of --region and --endpoint")?;
            return Ok(exit::USAGE);
        }
    };
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    let credentials = match Credentials::from_env(env) {
        Ok(credentials) => credentials,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    let mut config = ClientConfig {
        timeout: args.timeout,
        ..ClientConfig::default()
    };
    if let Some(path) = &args.dcs_ca_file {
        match std::fs::read(path) {
            Ok(pem) => config.extra_root_certificates_pem = Some(pem),
            Err(e) => {
                writeln!(err, "error: cannot read {}: {e}", path.display())?;
                return Ok(exit::USAGE);
            }
        }
    }
    let client = match DcsClient::new(config, Arc::new(SystemClock)) {
        Ok(client) => client,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    match client
        .show_instance(&endpoint, &credentials, &args.project_id, &args.instance_id)
        .await
    {
        Ok(answer) => {
            print(out, args.output, &answer.value)?;
            Ok(exit::OK)
        }
        Err(error) => {
            let api = error.api();
            let report = ErrorReport {
                error: ErrorFields {
                    reason: error.reason(),
                    http_status: api.map(|a| a.status),
                    error_code: api.and_then(|a| a.error_code.as_deref()),
                    error_msg: api
                        .and_then(|a| a.error_msg.clone())
                        .unwrap_or_else(|| error.to_string()),
                    request_id: error.request_id(),
                },
            };
            print(out, args.output, &report)?;
            writeln!(err, "error: {error}")?;
            Ok(exit_code(&error))
        }
    }
}
