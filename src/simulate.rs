//! `dcs-operator simulate`: the DCS API simulator as a process, until Ctrl-C or SIGTERM.

use std::sync::Arc;

use crate::cli::SimulateArgs;
use crate::clock::SystemClock;
use crate::dcs::sim::{
    IdentityConfig, SimConfig, Simulator, WriteConfig, load_identity_config, load_instances,
    load_write_config,
};
use crate::duration;

/// The write-side settings: defaults, then the instance file's `settings`, then flags.
fn write_config(args: &SimulateArgs) -> anyhow::Result<WriteConfig> {
    let mut config = match &args.instances {
        Some(path) => load_write_config(path, WriteConfig::default())?,
        None => WriteConfig::default(),
    };
    let durations = [
        (args.create_delay, &mut config.create_delay),
        (args.resize_delay, &mut config.resize_delay),
        (args.delete_delay, &mut config.delete_delay),
        (args.modify_delay, &mut config.modify_delay),
        (args.list_lag, &mut config.list_lag),
    ];
    for (flag, slot) in durations {
        if let Some(value) = flag {
            *slot = value;
        }
    }
    if let Some(quota) = args.instance_quota {
        config.instance_quota = quota;
    }
    if let Some(quota) = args.memory_quota_gb {
        config.memory_quota_gb = quota;
    }
    Ok(config)
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let instances = match &args.instances {
        Some(path) => load_instances(path)?,
        None => Vec::new(),
    };
    let writes = write_config(&args)?;
    let identity = match &args.instances {
        Some(path) => load_identity_config(path)?,
        None => IdentityConfig::default(),
    };
    let identity_summary = identity.is_enabled().then(|| {
        format!(
            "  identity: {} IdP(s), {} OIDC provider(s), {} Pod Identity token(s) (IAM/STS routes on this listener)",
            identity.idps.len(),
            identity.oidc_providers.len(),
            identity.pod_identity.len()
        )
    });
    let count = instances.len();
    let access_key = match (args.access_key, args.secret_key, &args.auth_token) {
        (Some(ak), Some(sk), _) => Some((ak, sk)),
        (Some(_), None, _) | (None, Some(_), _) => {
            anyhow::bail!("give --access-key and --secret-key together")
        }
        // A token alone means token authentication only.
        (None, None, Some(_)) => None,
        (None, None, None) => Some((
            SimConfig::DEFAULT_ACCESS_KEY.to_string(),
            SimConfig::DEFAULT_SECRET_KEY.to_string(),
        )),
    };
    let config = SimConfig {
        access_key: access_key.clone(),
        auth_token: args.auth_token.clone(),
        rate_limit_per_second: args.rate_limit,
        instances,
        writes: writes.clone(),
        identity,
    };
    let handle = Simulator::start(config, args.listen, Arc::new(SystemClock)).await?;
    println!("DCS simulator listening on {}", handle.base_url());
    println!("  instances: {count}");
    println!(
        "  writes: create {}, resize {}, delete {}, modify {}, list lag {}; quota {} instances, {} GB",
        duration::format(writes.create_delay),
        duration::format(writes.resize_delay),
        duration::format(writes.delete_delay),
        duration::format(writes.modify_delay),
        duration::format(writes.list_lag),
        writes.instance_quota,
        writes.memory_quota_gb
    );
    if let Some((ak, sk)) = &access_key {
        // These are the simulator's own test keys, printed so a user can copy them.
        println!("  access key: {ak}");
        println!("  secret key: {sk}");
        println!(
            "  try: HUAWEICLOUD_SDK_AK={ak} HUAWEICLOUD_SDK_SK={sk} dcs-operator query --endpoint {} --project-id <project> --instance-id <id>",
            handle.base_url()
        );
    }
    if args.auth_token.is_some() {
        println!("  X-Auth-Token accepted (the value given with --auth-token)");
    }
    if let Some(summary) = identity_summary {
        println!("{summary}");
    }
    println!(
        "  admin API: {}/_sim/ (instances, faults, counters)",
        handle.base_url()
    );
    crate::run::shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> SimulateArgs {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sim-write-settings.yaml"
        );
        let mut argv = vec!["dcs-operator", "simulate", "--instances", fixture];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Simulate(args)) => args,
            other => panic!("not a simulate command: {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_settings_over_the_defaults() {
        let from_file = write_config(&args(&[])).unwrap();
        assert_eq!(from_file.create_delay, Duration::from_secs(30));
        assert_eq!(from_file.list_lag, Duration::from_secs(5));
        assert_eq!(from_file.instance_quota, 10);
        assert_eq!(from_file.resize_delay, WriteConfig::default().resize_delay);
        let flagged = write_config(&args(&[
            "--create-delay",
            "2s",
            "--list-lag",
            "0s",
            "--delete-delay",
            "1m",
            "--memory-quota-gb",
            "64",
        ]))
        .unwrap();
        assert_eq!(flagged.create_delay, Duration::from_secs(2));
        assert_eq!(flagged.list_lag, Duration::ZERO);
        assert_eq!(flagged.delete_delay, Duration::from_secs(60));
        assert_eq!((flagged.instance_quota, flagged.memory_quota_gb), (10, 64));
    }
}
