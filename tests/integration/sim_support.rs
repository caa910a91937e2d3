//! What the simulator tests share: a simulator on loopback with a manual clock, the
//! operator's own signed client, and helpers to send signed requests and read answers.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use dcs_operator::clock::ManualClock;
use dcs_operator::dcs::client::RequestSpec;
use dcs_operator::dcs::sim::{SimConfig, SimHandle, SimInstance, Simulator, load_instances};
use dcs_operator::dcs::{ClientConfig, Credentials, DcsClient, DcsError};
use serde_json::{Map, Value};

pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

pub struct Harness {
    pub sim: SimHandle,
    pub clock: ManualClock,
    pub client: DcsClient,
    pub creds: Credentials,
}

pub fn example_instances() -> Vec<SimInstance> {
    load_instances(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sim-instances.yaml"))
        .expect("the example file loads")
}

pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub async fn start_with(config: SimConfig, client_config: ClientConfig) -> Harness {
    let clock = ManualClock::new(Utc::now());
    let sim = Simulator::start(
        config,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("simulator starts");
    let client = DcsClient::new(client_config, Arc::new(clock.clone())).unwrap();
    let creds = Credentials::access_key(
        SimConfig::DEFAULT_ACCESS_KEY,
        SimConfig::DEFAULT_SECRET_KEY.to_string(),
        None,
    );
    Harness {
        sim,
        clock,
        client,
        creds,
    }
}

impl Harness {
    pub async fn get_as(
        &self,
        creds: &Credentials,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, DcsError> {
        let spec = RequestSpec {
            method: "GET".into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            project_id: Some(PROJECT.into()),
            ..Default::default()
        };
        self.client
            .send_json::<Value>(&self.sim.endpoint(), creds, spec)
            .await
            .map(|answer| answer.value)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, DcsError> {
        self.get_as(&self.creds, path, query).await
    }

    pub async fn ids(&self, path: &str, query: &[(&str, &str)]) -> (u64, Vec<String>) {
        let page = self.get(path, query).await.unwrap();
        let ids = page["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["instance_id"].as_str().unwrap().to_string())
            .collect();
        (page["instance_num"].as_u64().unwrap(), ids)
    }
}

pub fn code(error: &DcsError) -> Option<&str> {
    error.api().and_then(|api| api.error_code.as_deref())
}

/// A raw answer: status, the JSON body (None when empty or not JSON) and the text.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub body: Option<Value>,
    pub text: String,
}

impl Raw {
    /// The DCS `error_code` of a refusal.
    pub fn code(&self) -> Option<&str> {
        self.body.as_ref()?.get("error_code")?.as_str()
    }
}

impl Harness {
    /// Signs and sends any request as the official SDK does (JSON Content-Type with
    /// charset on bodies, `X-Project-Id`), and returns the raw answer whatever its
    /// status; Err only when no answer came (a dropped connection).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Raw, reqwest::Error> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send_bytes(method, path, query, bytes).await
    }

    pub async fn send_bytes(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Raw, reqwest::Error> {
        let mut headers = vec![(
            "User-Agent".to_string(),
            "huaweicloud-usdk-python/3.0".to_string(),
        )];
        headers.push((
            "Content-Type".to_string(),
            if body.is_empty() {
                "application/json".to_string()
            } else {
                "application/json;charset=UTF-8".to_string()
            },
        ));
        let spec = RequestSpec {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers,
            body,
            project_id: Some(PROJECT.into()),
        };
        let request = self
            .client
            .build_request(&self.sim.endpoint(), &self.creds, &spec)
            .expect("the request builds");
        let response = reqwest::Client::new().execute(request).await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).ok();
        Ok(Raw { status, body, text })
    }
}
