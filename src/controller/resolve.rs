//! PURE: turns a DcsInstance spec and the operator's defaults into what reconcile
//! acts on, or a [`SpecProblem`] that names the field.

use std::time::Duration;

use crate::crd::DcsInstanceSpec;
use crate::dcs::Endpoint;
use crate::duration;
use crate::plan::SpecProblem;

pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Longer poll intervals (the schema allows `99999h`) are taken as a day.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Where a DcsInstance's DCS endpoint comes from decides whether the operator's own
/// credentials may be sent there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// Built from `spec.region` or `--default-region`: a Huawei Cloud host.
    Region,
    /// The operator's own default (the in-process simulator in demo mode).
    OperatorDefault,
    /// `spec.endpoint`, chosen by whoever can write the DcsInstance.
    UserSupplied,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: Endpoint,
    pub endpoint_source: EndpointSource,
    pub poll_interval: Duration,
    pub connection_secret_name: String,
}

/// The operator-wide defaults resolution needs.
#[derive(Debug, Clone, Default)]
pub struct SpecDefaults {
    pub region: Option<String>,
    pub endpoint: Option<Endpoint>,
    pub poll_interval: Duration,
}

pub fn resolve(
    spec: &DcsInstanceSpec,
    name: &str,
    defaults: &SpecDefaults,
) -> Result<Resolved, SpecProblem> {
    let (endpoint, endpoint_source) = match (&spec.region, &spec.endpoint) {
        (Some(_), Some(_)) => return Err(SpecProblem::RegionAndEndpoint),
        (Some(region), None) => (
            Endpoint::for_region(region).map_err(SpecProblem::Region)?,
            EndpointSource::Region,
        ),
        (None, Some(url)) => {
            let endpoint = Endpoint::parse(url).map_err(SpecProblem::Endpoint)?;
            if !endpoint.is_https() && !endpoint.is_loopback() {
                return Err(SpecProblem::PlainHttp);
            }
            (endpoint, EndpointSource::UserSupplied)
        }
        (None, None) => match (&defaults.endpoint, &defaults.region) {
            (Some(endpoint), _) => (endpoint.clone(), EndpointSource::OperatorDefault),
            (None, Some(region)) => (
                Endpoint::for_region(region).map_err(SpecProblem::DefaultRegion)?,
                EndpointSource::Region,
            ),
            (None, None) => return Err(SpecProblem::NoRegion),
        },
    };
    let poll_interval = match &spec.poll_interval {
        Some(text) => {
            let interval = duration::parse(text).map_err(SpecProblem::PollInterval)?;
            if interval < MIN_POLL_INTERVAL {
                return Err(SpecProblem::PollIntervalTooShort(text.to_string()));
            }
            // Far beyond any useful interval; bounded so no date computed from it
            // lies decades away (a group's poller wakes at least hourly anyway).
            interval.min(MAX_POLL_INTERVAL)
        }
        None => defaults.poll_interval.max(MIN_POLL_INTERVAL),
    };
    let connection_secret_name = match &spec.connection_secret {
        Some(secret) => secret.name.clone(),
        None => format!("{name}-dcs"),
    };
    if connection_secret_name.len() > crate::crd::MAX_NAME_LENGTH {
        return Err(SpecProblem::SecretNameTooLong(connection_secret_name));
    }
    Ok(Resolved {
        endpoint,
        endpoint_source,
        poll_interval,
        connection_secret_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ConnectionSecretSpec;

    fn spec() -> DcsInstanceSpec {
        DcsInstanceSpec {
            instance_id: Some("68d5745e-6af2-40e4-945d-fe449be00148".into()),
            region: Some("cn-north-4".into()),
            ..DcsInstanceSpec::default()
        }
    }

    fn defaults() -> SpecDefaults {
        SpecDefaults {
            poll_interval: Duration::from_secs(60),
            ..SpecDefaults::default()
        }
    }

    #[test]
    fn region_and_defaults() {
        let r = resolve(&spec(), "cache", &defaults()).unwrap();
        assert_eq!(
            r.endpoint.as_str(),
            "https://dcs.cn-north-4.myhuaweicloud.com"
        );
        assert_eq!(r.endpoint_source, EndpointSource::Region);
        assert_eq!(r.poll_interval, Duration::from_secs(60));
        assert_eq!(r.connection_secret_name, "cache-dcs");
    }

    #[test]
    fn endpoint_rules() {
        let mut s = spec();
        s.region = None;
        s.endpoint = Some("http://127.0.0.1:8443".into());
        let r = resolve(&s, "c", &defaults()).unwrap();
        assert_eq!(r.endpoint_source, EndpointSource::UserSupplied);
        s.endpoint = Some("http://dcs.example.com".into());
        assert!(
            resolve(&s, "c", &defaults())
                .unwrap_err()
                .to_string()
                .contains("spec.endpoint")
        );
        s.endpoint = Some("https://dcs.example.com/".into());
        assert!(resolve(&s, "c", &defaults()).is_ok());
        s.region = Some("cn-north-4".into());
        assert!(
            resolve(&s, "c", &defaults())
                .unwrap_err()
                .to_string()
                .contains("both")
        );
    }

    #[test]
    fn neither_uses_the_operator_default_or_fails() {
        let mut s = spec();
        s.region = None;
        assert!(
            resolve(&s, "c", &defaults())
                .unwrap_err()
                .to_string()
                .contains("--default-region")
        );
        let with_region = SpecDefaults {
            region: Some("ap-southeast-1".into()),
            ..defaults()
        };
        assert_eq!(
            resolve(&s, "c", &with_region).unwrap().endpoint_source,
            EndpointSource::Region
        );
        let demo = SpecDefaults {
            endpoint: Some(Endpoint::parse("http://127.0.0.1:1").unwrap()),
            ..defaults()
        };
        assert_eq!(
            resolve(&s, "c", &demo).unwrap().endpoint_source,
            EndpointSource::OperatorDefault
        );
    }

    #[test]
    fn poll_interval_and_secret_name() {
        let mut s = spec();
        s.poll_interval = Some("5m".into());
        assert_eq!(
            resolve(&s, "c", &defaults()).unwrap().poll_interval,
            Duration::from_secs(300)
        );
        s.poll_interval = Some("5s".into());
        assert!(
            resolve(&s, "c", &defaults())
                .unwrap_err()
                .to_string()
                .contains("minimum")
        );
        s.poll_interval = Some("fast".into());
        assert!(
            resolve(&s, "c", &defaults())
                .unwrap_err()
                .to_string()
                .contains("spec.pollInterval")
        );
        s.poll_interval = None;
        s.connection_secret = Some(ConnectionSecretSpec {
            name: "redis-conn".into(),
        });
        assert_eq!(
            resolve(&s, "c", &defaults())
                .unwrap()
                .connection_secret_name,
            "redis-conn"
        );
        s.connection_secret = None;
        assert!(resolve(&s, &"x".repeat(252), &defaults()).is_err());
    }
}
