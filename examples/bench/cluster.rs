//! `--cluster`: the benchmark's objects in the cluster of the current kubeconfig.
//! Installs the CRD (removed again only if this run installed it), creates its own
//! namespaces, Secrets and DcsInstances, and deletes the namespaces afterwards.

use std::time::Duration;

use anyhow::Context as _;
use dcs_operator::crd::DcsInstance;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};

use crate::harness;
use crate::standin::is_ready;

/// Creates at once at most this many objects (a real API server has its own limits).
const CREATE_CONCURRENCY: usize = 16;

pub struct Cluster {
    client: Client,
    pub namespaces: Vec<String>,
    installed_crd: bool,
}

impl Cluster {
    pub async fn setup(n: usize, namespaces: usize, endpoint: &str) -> anyhow::Result<Self> {
        let client = Client::try_default()
            .await
            .context("no Kubernetes configuration for --cluster")?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = DcsInstance::crd();
        let installed_crd = crds.get_opt(&crd.name_any()).await?.is_none();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("dcs-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("cannot install the DcsInstance CRD")?;
        // The API serves the kind only once the CRD is established.
        let served = async {
            loop {
                if let Ok(list) = client
                    .list_api_group_resources("dcs.operator.dev/v1alpha1")
                    .await
                    && list.resources.iter().any(|r| r.name == "dcsinstances")
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), served)
            .await
            .context("the DcsInstance CRD was not served within 60 s")?;

        // Unique names: a namespace being deleted by an earlier run cannot be reused.
        let prefix = format!(
            "dcs-bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let names: Vec<String> = (0..namespaces)
            .map(|i| harness::namespace_name(&prefix, i))
            .collect();
        let cluster = Cluster {
            client: client.clone(),
            namespaces: names.clone(),
            installed_crd,
        };
        let ns_api: Api<Namespace> = Api::all(client.clone());
        for ns in &names {
            let object: Namespace = serde_json::from_value(harness::namespace_object(ns))?;
            ns_api.create(&PostParams::default(), &object).await?;
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
            let secret: Secret = serde_json::from_value(harness::credentials_secret(ns))?;
            secrets.create(&PostParams::default(), &secret).await?;
        }
        futures::stream::iter(0..n)
            .map(|i| {
                let client = client.clone();
                let ns = harness::namespace_of(&prefix, i, namespaces);
                let endpoint = endpoint.to_string();
                async move {
                    let api: Api<DcsInstance> = Api::namespaced(client, &ns);
                    let object: DcsInstance =
                        serde_json::from_value(harness::dcs_instance(&ns, i, &endpoint))?;
                    api.create(&PostParams::default(), &object).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(cluster)
    }

    pub async fn ready_count(&self) -> anyhow::Result<usize> {
        let mut ready = 0;
        for ns in &self.namespaces {
            let api: Api<DcsInstance> = Api::namespaced(self.client.clone(), ns);
            for object in api.list(&ListParams::default()).await? {
                if is_ready(&serde_json::to_value(&object)?) {
                    ready += 1;
                }
            }
        }
        Ok(ready)
    }

    /// Deletes what setup created; failures are reported, never fatal.
    pub async fn teardown(self) {
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        for ns in &self.namespaces {
            if let Err(error) = ns_api.delete(ns, &DeleteParams::default()).await {
                eprintln!("   could not delete namespace {ns}: {error}");
            }
        }
        if self.installed_crd {
            let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
            let name = DcsInstance::crd().name_any();
            if let Err(error) = crds.delete(&name, &DeleteParams::default()).await {
                eprintln!("   could not delete the CRD {name}: {error}");
            }
        }
    }
}
