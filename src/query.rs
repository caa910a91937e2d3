//! `dcs-operator query`: one ShowInstance call, printed as the API's own object,
//! with an exit code per error class so scripts can tell problems apart.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::{OutputFormat, QueryArgs};
use crate::clock::SystemClock;
use crate::controller::secrets::FoundCredentials;
use crate::dcs::chain::{self, ChainCredentials, ChainError, ChainOptions, RefreshPolicy};
use crate::dcs::{ClientConfig, DcsClient, DcsError, Endpoint};

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
    let found = match credentials(args, env, &config).await {
        Ok(found) => found,
        Err((code, message)) => {
            writeln!(err, "error: {message}")?;
            return Ok(code);
        }
    };
    let Some(project_id) = args.project_id.clone().or(found.project_id) else {
        writeln!(
            err,
            "error: no project id: give --project-id (or HUAWEICLOUD_SDK_PROJECT_ID), or credentials that name one"
        )?;
        return Ok(exit::USAGE);
    };
    let client = match DcsClient::new(config, Arc::new(SystemClock)) {
        Ok(client) => client,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    match client
        .show_instance(
            &endpoint,
            &found.credentials,
            &project_id,
            &args.instance_id,
        )
        .await
    {
        Ok(answer) => {
            print(out, args.output, &answer.value)?;
            Ok(exit::OK)
        }
        Err(error) => report_error(args, &error, out, err),
    }
}

/// A failed ShowInstance: the error as JSON on stdout, one line on stderr, and the
/// exit code for its kind.
fn report_error(
    args: &QueryArgs,
    error: &crate::dcs::DcsError,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
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
    Ok(exit_code(error))
}

/// The credentials of the operator's chain, as `run` would get them (the region
/// given picks the IAM and STS hosts). Errors: the exit code and one sentence.
async fn credentials(
    args: &QueryArgs,
    env: impl Fn(&str) -> Option<String>,
    config: &ClientConfig,
) -> Result<FoundCredentials, (i32, String)> {
    let options = ChainOptions {
        credentials_dir: args.credentials_dir.clone(),
        iam_endpoint: args.iam_endpoint.clone(),
        sts_endpoint: args.sts_endpoint.clone(),
        region: args.region.clone(),
        from_metadata: args.credentials_from_metadata,
        ..ChainOptions::default()
    };
    let usage = |message: String| (exit::USAGE, message);
    let provider = chain::select(env, |path| chain::read_bounded(path).ok(), &options)
        .map_err(|e| usage(e.to_string()))?
        .ok_or_else(|| usage(chain::NOTHING_CONFIGURED.to_string()))?;
    let exchanges = chain::HttpExchanges::new(config).map_err(usage)?;
    let chain = ChainCredentials::new(
        provider,
        Arc::new(exchanges),
        Arc::new(SystemClock),
        RefreshPolicy::default(),
    );
    chain.get().await.map_err(|error| match error {
        // The cloud refused (or could not be reached for) the exchange.
        ChainError::Exchange {
            unavailable: true, ..
        } => (exit::UNAVAILABLE, error.to_string()),
        ChainError::Exchange { .. } => (exit::AUTH, error.to_string()),
        other => usage(other.to_string()),
    })
}
