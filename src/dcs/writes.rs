//! The DCS write side the operator needs to own an instance: create, delete, tags,
//! the in-place changes (resize, modify, password reset), the lookups that make a
//! create recoverable (by owner tag, by exact name), and the classification of a
//! write's result into "accepted, refused, not sent, unknown".
//!
//! Create is not idempotent (LIFECYCLE.md §11): every accepted POST bills a new
//! instance and the API has no client token. So a create whose answer is lost or
//! unreadable is an [`WriteOutcome::Unknown`], never a success or a failure, and the
//! caller recovers by looking the instance up by its owner tag before creating again.
//!
//! Every answer is hostile input: it is decoded item by item into bounded strings
//! and short lists, never into a `serde_json::Value`, and nothing here panics.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};

use super::bounded::{self, Text};
use super::client::{Answer, DcsClient, Endpoint, RequestSpec};
use super::credentials::{Credentials, SecretString};
use super::error::{ApiError, DcsError};
use super::signer;

/// The tag key that marks an instance as owned by one DcsInstance: its value is the
/// custom resource's UID. No `/` and at most 36 characters, as the API pages allow.
pub const OWNER_TAG_KEY: &str = "dcs-operator-uid";

/// At most this many tags of one answer (or one list item) are kept; the API allows
/// 20 per instance, so more is an answer not worth reading further.
pub const MAX_TAGS_KEPT: usize = 64;
/// The longest tag key kept (the guide's limit). A longer key is dropped, not cut:
/// a cut key is another key, and could read as the owner key.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// The longest tag value kept (the guide's limit). A tag with a longer value is
/// dropped too: a cut value could read as some CR's UID.
pub const MAX_TAG_VALUE_CHARS: usize = 255;
/// The one page an owner lookup reads: an owner tag or an exact name matches one
/// instance, a few after a lost create answer; a full page is itself suspicious.
pub const FIND_LIMIT: u32 = 10;

/// The Content-Type the SDK sends with a body (LIFECYCLE.md §1).
const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// The state codes of LIFECYCLE.md §10 (and Terraform's additions: `DCS.4121` reset
/// password running, `DCS.4231` offline key analysis, `DCS.4975` creating or
/// restarting, `CBC.99003651` billing operation running) that mean "not now, the
/// instance is busy": requeue and retry, nothing is wrong with the request.
/// The documented legacy twin of `DCS.40NN` is `1114000NN`; the `DCS.41NN` and
/// `DCS.49NN` codes have no documented twin, so none is guessed.
pub const BUSY_CODES: &[&str] = &[
    "DCS.4026",
    "DCS.4049",
    "DCS.4017",
    "DCS.4111",
    "DCS.4113",
    "DCS.4114",
    "DCS.4115",
    "DCS.4116",
    "DCS.4117",
    "DCS.4118",
    "DCS.4120",
    "DCS.4096",
    "DCS.4097",
    "DCS.4104",
    "DCS.4099",
    "DCS.4121",
    "DCS.4231",
    "DCS.4975",
    "CBC.99003651",
    "111400026",
    "111400049",
    "111400017",
    "111400096",
    "111400097",
    "111400099",
];

/// A tag as the API writes it (`ResourceTag`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ResourceTag {
    pub key: String,
    pub value: String,
}

impl ResourceTag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The ownership marker of the custom resource with this UID.
    pub fn owner(uid: &str) -> Self {
        Self::new(OWNER_TAG_KEY, uid)
    }

    /// True when this is the ownership marker of that UID (an empty UID owns nothing).
    pub fn is_owner(&self, uid: &str) -> bool {
        !uid.is_empty() && self.key == OWNER_TAG_KEY && self.value == uid
    }
}

/// The CreateInstance body, with the API's field names (LIFECYCLE.md §2). The
/// operator never sends `bss_param` (omitted means pay-per-use) nor `instance_num`
/// (one instance per call), so neither field exists here.
#[derive(Clone, Default, Serialize)]
pub struct CreateInstanceBody {
    pub name: String,
    pub engine: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// GB: `0.125` for 128 MB flavours; whole sizes go out as integers (`2`), which
    /// a float field and an int field alike accept.
    #[serde(serialize_with = "capacity_number")]
    pub capacity: f64,
    pub spec_code: String,
    /// AZ codes (not IDs).
    pub az_codes: Vec<String>,
    pub vpc_id: String,
    pub subnet_id: String,
    /// Redis 3.0 and Memcached only; later Redis versions use whitelists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_password"
    )]
    pub password: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_password_access: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ResourceTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `HH:mm:ss` UTC, together with `maintain_end`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintain_begin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintain_end: Option<String>,
    /// A string (`"0"` is the default project), as the API wants it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enterprise_project_id: Option<String>,
}

/// Written by hand so that the password never reaches a log line.
impl fmt::Debug for CreateInstanceBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateInstanceBody")
            .field("name", &self.name)
            .field("engine", &self.engine)
            .field("engine_version", &self.engine_version)
            .field("capacity", &self.capacity)
            .field("spec_code", &self.spec_code)
            .field("az_codes", &self.az_codes)
            .field("vpc_id", &self.vpc_id)
            .field("subnet_id", &self.subnet_id)
            .field("security_group_id", &self.security_group_id)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("no_password_access", &self.no_password_access)
            .field("tags", &self.tags)
            .field("description", &self.description)
            .field("maintain_begin", &self.maintain_begin)
            .field("maintain_end", &self.maintain_end)
            .field("enterprise_project_id", &self.enterprise_project_id)
            .finish()
    }
}

/// Whole GB as an integer, fractions as a float. NaN, infinities and non-positive
/// sizes are refused: serde_json would write NaN as `null`, a different request.
fn capacity_number<S: Serializer>(capacity: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    let capacity = *capacity;
    if !capacity.is_finite() || capacity <= 0.0 {
        return Err(serde::ser::Error::custom(format!(
            "capacity must be a positive number of GB, got {capacity}"
        )));
    }
    if capacity.fract() == 0.0 && capacity <= 1.0e15 {
        // Whole and far inside u64's range: the cast is exact.
        serializer.serialize_u64(capacity as u64)
    } else {
        serializer.serialize_f64(capacity)
    }
}

fn expose_password_ref<S: Serializer>(
    password: &Option<&SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match password {
        Some(secret) => serializer.serialize_str(secret.expose()),
        None => serializer.serialize_none(),
    }
}

fn expose_password<S: Serializer>(
    password: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match password {
        Some(secret) => serializer.serialize_str(secret.expose()),
        None => serializer.serialize_none(),
    }
}

/// The ResizeInstance body (LIFECYCLE.md §4) for a change of flavour and capacity.
/// Capacity and replica changes go in separate calls; `available_zones`,
/// `node_list`, `reserved_ip` and `bss_param` are not sent by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResizeInstanceBody {
    /// The target flavour (from ListFlavors).
    pub spec_code: String,
    /// GB, written as [`CreateInstanceBody::capacity`] is: whole sizes as integers
    /// (`4`), fractions as floats (`0.5`); NaN, infinities and non-positive sizes
    /// are never sent.
    #[serde(serialize_with = "capacity_number")]
    pub new_capacity: f64,
    /// `createReplication`, `deleteReplication`, `addSharding` or `instanceType`;
    /// omitted for a capacity change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// Omitted means the API's default, true (now); false defers an interrupting
    /// change to the maintenance window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execute_immediately: Option<bool>,
}

/// The UpdateInstance body (LIFECYCLE.md §5): only what is set goes out. Terraform
/// sends the port alone (it runs as a background task, `task` `UpdatePort`), so a
/// caller should too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModifyInstanceBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `HH:mm:ss` UTC, together with `maintain_end` (the API refuses half a window
    /// with `DCS.4106`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintain_begin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintain_end: Option<String>,
    /// Redis 3.0 and Memcached only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    /// Redis 4.0 and later; drops every connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl ModifyInstanceBody {
    /// True when nothing would be sent: [`DcsClient::update_instance`] refuses it.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The ResetPassword body. Private: [`DcsClient::reset_password`] builds it, and
/// its Debug never shows the password.
#[derive(Serialize)]
struct ResetPasswordBody<'a> {
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_password_ref"
    )]
    new_password: Option<&'a SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_password_access: Option<bool>,
}

impl fmt::Debug for ResetPasswordBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetPasswordBody")
            .field(
                "new_password",
                &self.new_password.as_ref().map(|_| "<redacted>"),
            )
            .field("no_password_access", &self.no_password_access)
            .finish()
    }
}

/// The `code` of a ResetPassword answer that means success.
pub const RESET_SUCCESS_CODE: &str = "1";

/// How a ResetPassword answered with HTTP 200 but a `code` other than `"1"` comes
/// back: `DcsError::Client` with `status` 200, `error_code` this prefix followed by
/// the answer's code (`"ResetPassword.code.3"` for a locked instance) and
/// `error_msg` the answer's `message` (and `ext_message`). So [`write_outcome`]
/// says Refused, [`DcsError::reason`] says `RequestRefused`, [`is_busy`] says no,
/// and [`reset_refusal_code`] gives the code back.
pub const RESET_REFUSED_PREFIX: &str = "ResetPassword.code.";

/// The longest `code` read from a ResetPassword answer (cut beyond it, so still
/// never `"1"`).
const RESET_CODE_CHARS: usize = 32;
/// The longest `message` / `ext_message` kept from a ResetPassword answer.
const RESET_MESSAGE_CHARS: usize = 512;

/// The `code` of a ResetPassword refusal (`"3"`: locked), when `error` is one
/// (see [`RESET_REFUSED_PREFIX`]).
pub fn reset_refusal_code(error: &DcsError) -> Option<&str> {
    match error {
        DcsError::Client(api) if api.status == 200 => api
            .error_code
            .as_deref()?
            .strip_prefix(RESET_REFUSED_PREFIX),
        _ => None,
    }
}

/// An accepted ResetPassword answer: `code` is [`RESET_SUCCESS_CODE`] (anything
/// else is an error, see [`RESET_REFUSED_PREFIX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPasswordAnswer {
    pub code: String,
    /// Cut to 512 characters.
    pub message: Option<String>,
    /// Cut to 512 characters.
    pub ext_message: Option<String>,
}

/// What an accepted create names: the id every later call uses. Store it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedInstance {
    /// A lower-case UUID: an answer without one is a decode error, not a success.
    pub instance_id: String,
    /// As the answer spells it (cut to 128 characters).
    pub instance_name: Option<String>,
    /// Only yearly/monthly orders have one; a pay-per-use create should not.
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagAction {
    Create,
    Delete,
}

impl TagAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TagAction::Create => "create",
            TagAction::Delete => "delete",
        }
    }
}

/// What an owner lookup asks the list for. Either way failed creations are included
/// and the answer is re-checked against each item's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceFilter {
    /// `tags=key=value`: the owner marker (primary).
    Tag { key: String, value: String },
    /// `name=<name>&name_equal=true`: the secondary guard.
    ExactName(String),
}

impl InstanceFilter {
    /// The instances tagged as owned by the custom resource with this UID.
    pub fn owner(uid: &str) -> Self {
        InstanceFilter::Tag {
            key: OWNER_TAG_KEY.to_string(),
            value: uid.to_string(),
        }
    }

    /// The query pairs, or why the filter cannot be sent. An empty name or key would
    /// be read as "no filter" and list every instance; a `,` or `=` in a tag would be
    /// read as another pair.
    fn query(&self) -> Result<Vec<(String, String)>, String> {
        let mut query = vec![
            ("include_failure".to_string(), "true".to_string()),
            ("limit".to_string(), FIND_LIMIT.to_string()),
            ("offset".to_string(), "0".to_string()),
        ];
        match self {
            InstanceFilter::Tag { key, value } => {
                if key.is_empty() || value.is_empty() {
                    return Err("a tag filter needs a key and a value".into());
                }
                if key.contains([',', '=']) || value.contains(',') {
                    return Err(
                        "a tag filter's key may not hold ',' or '=', its value not ','".into(),
                    );
                }
                query.push(("tags".to_string(), format!("{key}={value}")));
            }
            InstanceFilter::ExactName(name) => {
                if name.is_empty() {
                    return Err("a name filter needs a name".into());
                }
                query.push(("name".to_string(), name.clone()));
                query.push(("name_equal".to_string(), "true".to_string()));
            }
        }
        Ok(query)
    }

    /// True when the item's own fields say it matches: a server that ignored the
    /// filter must not make the operator adopt someone else's instance.
    pub fn confirmed_by(&self, found: &FoundInstance) -> bool {
        match self {
            InstanceFilter::Tag { key, value } => found
                .tags
                .iter()
                .any(|tag| tag.key == *key && tag.value == *value),
            InstanceFilter::ExactName(name) => found.name.as_deref() == Some(name.as_str()),
        }
    }
}

/// One list item of an owner lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundInstance {
    /// A lower-case UUID (items with any other id are dropped).
    pub instance_id: String,
    /// Cut to 128 characters.
    pub name: Option<String>,
    /// Cut to 64 characters.
    pub status: Option<String>,
    /// Bounded as [`DcsClient::show_tags`] bounds them.
    pub tags: Vec<ResourceTag>,
}

impl FoundInstance {
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.tags.iter().any(|t| t.key == key && t.value == value)
    }
}

/// The answer of an owner lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundInstances {
    /// The items whose id is an instance id and whose own fields confirm the filter,
    /// each id once, in the answer's order.
    pub instances: Vec<FoundInstance>,
    /// More may match than this page shows: the page was full, longer than asked
    /// for, or `instance_num` counts more than it holds. Treat as "do not create".
    pub truncated: bool,
    /// Items left out: an id that is not a DCS instance id, or fields that do not
    /// confirm the filter. Non-zero means the server is not answering the question
    /// asked; treat as "do not create".
    pub dropped: u32,
}

/// What a write's result says about whether it took effect: the question a
/// controller must answer before it may create again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// A 2xx answer: the service took the request.
    Accepted,
    /// The gateway or the service refused it (4xx): nothing was done.
    Refused,
    /// It never reached the service: throttled at the gateway, or never built.
    NotSent,
    /// It may have been applied: a 5xx, a lost or unreadable answer.
    Unknown,
}

/// Classifies a write's result (LIFECYCLE.md §11: create is not idempotent, so only
/// Refused and NotSent allow a blind retry of a create).
pub fn write_outcome<T>(result: &Result<T, DcsError>) -> WriteOutcome {
    match result {
        Ok(_) => WriteOutcome::Accepted,
        Err(error) => error_outcome(error),
    }
}

/// [`write_outcome`] of an error.
pub fn error_outcome(error: &DcsError) -> WriteOutcome {
    match error {
        DcsError::Client(_)
        | DcsError::Unauthorized(_)
        | DcsError::Forbidden(_)
        | DcsError::NotFound(_) => WriteOutcome::Refused,
        DcsError::Throttled { .. } | DcsError::Unsendable { .. } => WriteOutcome::NotSent,
        // A 5xx may come from a backend that applied the write before failing; a
        // transport error may have lost the answer, not the request; an unreadable
        // 2xx answer was an acceptance whose content is unknown.
        DcsError::Server(_) | DcsError::Transport { .. } | DcsError::Decode { .. } => {
            WriteOutcome::Unknown
        }
    }
}

/// True for a refusal that only means "the instance is busy, try later"
/// ([`BUSY_CODES`], on a 4xx as the API sends them).
pub fn is_busy(error: &DcsError) -> bool {
    matches!(error, DcsError::Client(api) if api.code_is(BUSY_CODES))
}

fn unsendable(message: impl Into<String>) -> DcsError {
    DcsError::Unsendable {
        message: message.into(),
    }
}

/// Refuses an id that is not a DCS instance id before anything is sent: an empty id
/// would turn `DELETE …/instances/{id}` into the path of the batch delete.
fn check_instance_id(instance_id: &str) -> Result<(), DcsError> {
    if bounded::is_instance_id(instance_id) {
        Ok(())
    } else {
        Err(unsendable(format!(
            "{:?} is not a DCS instance id (a lower-case UUID)",
            bounded::clip(instance_id, 64)
        )))
    }
}

impl DcsClient {
    /// A request of this module: the default headers, `X-Project-Id`, and with a
    /// body the SDK's `application/json;charset=UTF-8`.
    fn write_spec(
        &self,
        method: &str,
        path: String,
        project_id: &str,
        body: Vec<u8>,
    ) -> RequestSpec {
        let mut spec = RequestSpec {
            method: method.into(),
            path,
            project_id: Some(project_id.to_string()),
            ..self.default_spec()
        };
        if !body.is_empty() {
            for (name, value) in &mut spec.headers {
                if name.eq_ignore_ascii_case("content-type") {
                    *value = JSON_UTF8.to_string();
                }
            }
            spec.body = body;
        }
        spec
    }

    /// CreateInstance: `POST /v2/{project_id}/instances`. One POST, never retried
    /// here; on an error, [`write_outcome`] says whether an instance may exist.
    pub async fn create_instance(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        body: &CreateInstanceBody,
    ) -> Result<Answer<CreatedInstance>, DcsError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| unsendable(format!("the create body cannot be written: {e}")))?;
        let path = format!("/v2/{}/instances", signer::encode(project_id));
        let spec = self.write_spec("POST", path, project_id, bytes);
        let (answer, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        let value = decode_created(&answer).map_err(|message| DcsError::Decode {
            message,
            request_id: request_id.clone(),
        })?;
        Ok(Answer {
            value,
            request_id,
            pages: 1,
        })
    }

    /// DeleteSingleInstance: `DELETE /v2/{project_id}/instances/{id}` (never the
    /// batch delete). Any 2xx is success, whatever its body; done is a later 404
    /// `DCS.3022` on ShowInstance.
    pub async fn delete_instance(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Answer<()>, DcsError> {
        check_instance_id(instance_id)?;
        let path = format!(
            "/v2/{}/instances/{}",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("DELETE", path, project_id, Vec::new());
        let (_, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        Ok(Answer {
            value: (),
            request_id,
            pages: 1,
        })
    }

    /// ResizeInstance: `POST /v2/{project_id}/instances/{id}/resize`. Any 2xx
    /// (documented: 204) is accepted, whatever its body; the instance then goes
    /// RUNNING → EXTENDING → RUNNING at the new flavour. One POST, never retried
    /// here: a resize bills, so a 5xx or a lost answer ([`WriteOutcome::Unknown`])
    /// is resolved by reading the instance, not by sending it again.
    pub async fn resize_instance(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
        body: &ResizeInstanceBody,
    ) -> Result<Answer<()>, DcsError> {
        check_instance_id(instance_id)?;
        if body.spec_code.trim().is_empty() {
            return Err(unsendable("a resize needs a spec_code"));
        }
        let bytes = serde_json::to_vec(body)
            .map_err(|e| unsendable(format!("the resize body cannot be written: {e}")))?;
        let path = format!(
            "/v2/{}/instances/{}/resize",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("POST", path, project_id, bytes);
        let (_, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        Ok(Answer {
            value: (),
            request_id,
            pages: 1,
        })
    }

    /// UpdateInstance: `PUT /v2/{project_id}/instances/{id}` with the fields set in
    /// `body`. Any 2xx (documented: 204) is accepted, whatever its body. A port
    /// change runs on as a background task (ShowInstance `task`). An empty body is
    /// never sent (Unsendable): the API's answer to it is undocumented.
    pub async fn update_instance(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
        body: &ModifyInstanceBody,
    ) -> Result<Answer<()>, DcsError> {
        check_instance_id(instance_id)?;
        if body.is_empty() {
            return Err(unsendable("an update with no field set changes nothing"));
        }
        let bytes = serde_json::to_vec(body)
            .map_err(|e| unsendable(format!("the update body cannot be written: {e}")))?;
        let path = format!(
            "/v2/{}/instances/{}",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("PUT", path, project_id, bytes);
        let (_, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        Ok(Answer {
            value: (),
            request_id,
            pages: 1,
        })
    }

    /// ResetPassword: `POST /v2/{project_id}/instances/{id}/password/reset` with
    /// `{new_password?, no_password_access?}` (no old password needed; it also
    /// switches between password and password-free access). What is left out is
    /// not sent; the API wants `new_password` unless `no_password_access` is true
    /// and refuses the rest (`DCS.4845`, `DCS.4849`).
    ///
    /// The API answers HTTP 200 with a `code`: `"1"` (a string or the number 1) is
    /// success; any other code is a refusal returned as described at
    /// [`RESET_REFUSED_PREFIX`]; an answer without a readable code is a
    /// [`DcsError::Decode`] (the reset may or may not have happened).
    pub async fn reset_password(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
        new_password: Option<&SecretString>,
        no_password_access: Option<bool>,
    ) -> Result<Answer<ResetPasswordAnswer>, DcsError> {
        check_instance_id(instance_id)?;
        let body = ResetPasswordBody {
            new_password,
            no_password_access,
        };
        // The error of a failed write names no value, so the password cannot leak
        // through it.
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| unsendable(format!("the reset body cannot be written: {e}")))?;
        let path = format!(
            "/v2/{}/instances/{}/password/reset",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("POST", path, project_id, bytes);
        let (answer, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        let value = decode_reset(&answer, &request_id)?;
        Ok(Answer {
            value,
            request_id,
            pages: 1,
        })
    }

    /// ShowTags: `GET /v2/{project_id}/instances/{id}/tags`. At most
    /// [`MAX_TAGS_KEPT`] tags are kept; a tag whose key is longer than
    /// [`MAX_TAG_KEY_CHARS`] or whose value is longer than [`MAX_TAG_VALUE_CHARS`]
    /// (or not a string) is dropped, never cut. A missing or null value reads as "".
    pub async fn show_tags(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Answer<Vec<ResourceTag>>, DcsError> {
        check_instance_id(instance_id)?;
        let path = format!(
            "/v2/{}/instances/{}/tags",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("GET", path, project_id, Vec::new());
        let (answer, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        let value = decode_tags(&answer).map_err(|message| DcsError::Decode {
            message,
            request_id: request_id.clone(),
        })?;
        Ok(Answer {
            value,
            request_id,
            pages: 1,
        })
    }

    /// BatchCreateOrDeleteTags: `POST /v2/{project_id}/dcs/{id}/tags/action` (tag
    /// writes live under `/dcs/`). An empty `tags` sends nothing (`pages` 0): the
    /// API refuses an empty list, and there is nothing to change.
    pub async fn tag_action(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
        action: TagAction,
        tags: &[ResourceTag],
    ) -> Result<Answer<()>, DcsError> {
        check_instance_id(instance_id)?;
        if tags.is_empty() {
            return Ok(Answer {
                value: (),
                request_id: None,
                pages: 0,
            });
        }
        #[derive(Serialize)]
        struct Body<'a> {
            action: &'static str,
            tags: &'a [ResourceTag],
        }
        let bytes = serde_json::to_vec(&Body {
            action: action.as_str(),
            tags,
        })
        .map_err(|e| unsendable(format!("the tag body cannot be written: {e}")))?;
        let path = format!(
            "/v2/{}/dcs/{}/tags/action",
            signer::encode(project_id),
            signer::encode(instance_id)
        );
        let spec = self.write_spec("POST", path, project_id, bytes);
        let (_, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        Ok(Answer {
            value: (),
            request_id,
            pages: 1,
        })
    }

    /// The owner lookup: one page (`offset=0`, `limit=`[`FIND_LIMIT`]) of the v2
    /// list with `include_failure=true` and the filter. Each item is re-checked
    /// against the filter; see [`FoundInstances`] for what `truncated` and `dropped`
    /// mean. An instance created moments ago may not be listed yet (list lag): the
    /// id a create returned is the only proof of it until then.
    pub async fn find_instances(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        filter: &InstanceFilter,
    ) -> Result<Answer<FoundInstances>, DcsError> {
        let query = filter.query().map_err(unsendable)?;
        let mut spec = self.write_spec(
            "GET",
            format!("/v2/{}/instances", signer::encode(project_id)),
            project_id,
            Vec::new(),
        );
        spec.query = query;
        let (answer, request_id) = self.send_raw(endpoint, credentials, spec).await?;
        let value = decode_found(&answer, filter).map_err(|message| DcsError::Decode {
            message,
            request_id: request_id.clone(),
        })?;
        Ok(Answer {
            value,
            request_id,
            pages: 1,
        })
    }
}

// ---------------------------------------------------------------------------
// Bounded decoding of the answers.
// ---------------------------------------------------------------------------

/// Decodes a whole answer with `seed`; trailing garbage is an error too.
fn decode_with<'de, S: DeserializeSeed<'de>>(body: &'de [u8], seed: S) -> Result<S::Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the answer has an empty body".into());
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = seed.deserialize(&mut json).map_err(|e| e.to_string())?;
    json.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A JSON value where a string is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar {
    /// `null`.
    Null,
    /// A string within the limit.
    Text(String),
    /// A string over the limit: never copied, never cut.
    TooLong,
    /// Anything else (skipped unbuilt).
    Other,
}

/// Reads a string of at most `max` characters; a longer one is only measured.
#[derive(Clone, Copy)]
struct Limited {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Limited {
    type Value = Scalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Limited {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
        // Counting stops one past the limit, so a megabyte string costs little more.
        Ok(if value.chars().nth(self.max).is_some() {
            Scalar::TooLong
        } else {
            Scalar::Text(value.to_string())
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// Display fields: cut (with an ellipsis) rather than dropped.
const NAME_TEXT: Text = Text {
    max: 128,
    numbers: false,
};
const STATUS_TEXT: Text = Text {
    max: 64,
    numbers: false,
};

/// One `{key, value}`; None when it is not a tag the operator could have written or
/// could match (see [`DcsClient::show_tags`]).
struct TagItem;

impl<'de> DeserializeSeed<'de> for TagItem {
    type Value = Option<ResourceTag>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagItem {
    type Value = Option<ResourceTag>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tag")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key = Scalar::Null;
        let mut value = Scalar::Null;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match name.as_ref() {
                "key" => {
                    key = map.next_value_seed(Limited {
                        max: MAX_TAG_KEY_CHARS,
                    })?
                }
                "value" => {
                    value = map.next_value_seed(Limited {
                        max: MAX_TAG_VALUE_CHARS,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let key = match key {
            Scalar::Text(key) if !key.is_empty() => key,
            _ => return Ok(None),
        };
        let value = match value {
            Scalar::Text(value) => value,
            Scalar::Null => String::new(),
            Scalar::TooLong | Scalar::Other => return Ok(None),
        };
        Ok(Some(ResourceTag { key, value }))
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, unit, seq);
}

/// A `tags` value: Some(list) for an array (null reads as an empty list), None for
/// anything else. Past [`MAX_TAGS_KEPT`] items the rest is skipped unbuilt.
struct TagList;

impl<'de> DeserializeSeed<'de> for TagList {
    type Value = Option<Vec<ResourceTag>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagList {
    type Value = Option<Vec<ResourceTag>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tags")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tags = Vec::new();
        loop {
            if tags.len() >= MAX_TAGS_KEPT {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                continue;
            }
            match seq.next_element_seed(TagItem)? {
                Some(Some(tag)) => tags.push(tag),
                Some(None) => {}
                None => break,
            }
        }
        Ok(Some(tags))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(Vec::new()))
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, map);
}

/// The first item of a create answer's `instances`.
struct CreatedItem {
    instance_id: Scalar,
    instance_name: Option<String>,
}

impl<'de> Visitor<'de> for CreatedItemSeed {
    type Value = Option<CreatedItem>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a created instance")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut item = CreatedItem {
            instance_id: Scalar::Null,
            instance_name: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "instance_id" => item.instance_id = map.next_value_seed(Limited { max: 64 })?,
                "instance_name" => item.instance_name = map.next_value_seed(NAME_TEXT)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(item))
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, unit, seq);
}

struct CreatedItemSeed;

impl<'de> DeserializeSeed<'de> for CreatedItemSeed {
    type Value = Option<CreatedItem>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A create answer's `instances`: Some(first item) for a list (the rest skipped
/// unbuilt), None for an empty list or anything that is not a list.
struct FirstCreated;

impl<'de> DeserializeSeed<'de> for FirstCreated {
    type Value = Option<CreatedItem>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstCreated {
    type Value = Option<CreatedItem>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of created instances")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element_seed(CreatedItemSeed)?.flatten();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(first)
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, unit, map);
}

/// A whole create answer: `instances` (first item only) and `order_id`.
#[derive(Default)]
struct CreatedAnswer {
    /// None: no `instances` key at all.
    first: Option<Option<CreatedItem>>,
    order_id: Option<String>,
}

struct CreatedAnswerSeed;

impl<'de> DeserializeSeed<'de> for CreatedAnswerSeed {
    type Value = CreatedAnswer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CreatedAnswerSeed {
    type Value = CreatedAnswer;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a create answer (an object with instances)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut answer = CreatedAnswer::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "instances" => answer.first = Some(map.next_value_seed(FirstCreated)?),
                "order_id" => {
                    answer.order_id = map.next_value_seed(Text {
                        max: 128,
                        numbers: true,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(answer)
    }
}

/// `instances[0].instance_id` of a create answer, which must be a DCS instance id:
/// an answer without one says the create was accepted but not what it made, which
/// the caller must treat as unknown (a decode error), never as success.
fn decode_created(body: &[u8]) -> Result<CreatedInstance, String> {
    let answer = decode_with(body, CreatedAnswerSeed)?;
    let Some(first) = answer.first else {
        return Err("the create answer has no instances".into());
    };
    let Some(item) = first else {
        return Err("the create answer's instances name no instance".into());
    };
    match item.instance_id {
        Scalar::Text(id) if bounded::is_instance_id(&id) => Ok(CreatedInstance {
            instance_id: id,
            instance_name: item.instance_name,
            order_id: answer.order_id,
        }),
        Scalar::Text(id) => Err(format!(
            "the created instance id {:?} is not a DCS instance id (a lower-case UUID)",
            bounded::clip(&id, 64)
        )),
        Scalar::TooLong => {
            Err("the created instance id is too long to be a DCS instance id".into())
        }
        Scalar::Null | Scalar::Other => Err("the created instance has no instance_id".into()),
    }
}

/// A ShowTags answer: `tags`, the rest skipped. None: no `tags` key.
struct TagsAnswerSeed;

impl<'de> DeserializeSeed<'de> for TagsAnswerSeed {
    type Value = Option<Option<Vec<ResourceTag>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TagsAnswerSeed {
    type Value = Option<Option<Vec<ResourceTag>>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tags answer (an object with tags)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tags = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "tags" {
                tags = Some(map.next_value_seed(TagList)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(tags)
    }
}

/// The tags of a ShowTags answer. An answer without a `tags` list is a decode
/// error, not "no tags": the caller could otherwise re-tag or disown an instance on
/// the word of an answer that did not say.
fn decode_tags(body: &[u8]) -> Result<Vec<ResourceTag>, String> {
    match decode_with(body, TagsAnswerSeed)? {
        Some(Some(tags)) => Ok(tags),
        Some(None) => Err("field tags: expected a list of tags".into()),
        None => Err("the answer has no tags".into()),
    }
}

/// One list item, as far as an owner lookup reads it.
struct RawFound {
    instance_id: Scalar,
    name: Option<String>,
    status: Option<String>,
    tags: Option<Vec<ResourceTag>>,
}

struct FoundItem;

impl<'de> DeserializeSeed<'de> for FoundItem {
    type Value = Option<RawFound>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FoundItem {
    type Value = Option<RawFound>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an instance")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut item = RawFound {
            instance_id: Scalar::Null,
            name: None,
            status: None,
            tags: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "instance_id" => item.instance_id = map.next_value_seed(Limited { max: 64 })?,
                "name" => item.name = map.next_value_seed(NAME_TEXT)?,
                "status" => item.status = map.next_value_seed(STATUS_TEXT)?,
                "tags" => item.tags = map.next_value_seed(TagList)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(item))
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, unit, seq);
}

/// An owner lookup's page as it is decoded.
struct FoundPage<'f> {
    filter: &'f InstanceFilter,
    found: FoundInstances,
    seen: HashSet<String>,
    /// Items read, kept or not (at most [`FIND_LIMIT`]).
    received: usize,
    /// The page held more items than asked for (the rest skipped unbuilt).
    overlong: bool,
    /// Whether the answer had an `instances` list (null counts as an empty one).
    listed: bool,
    instance_num: Option<u64>,
}

impl FoundPage<'_> {
    fn take(&mut self, item: Option<RawFound>) {
        let Some(item) = item else {
            self.found.dropped = self.found.dropped.saturating_add(1);
            return;
        };
        let Scalar::Text(instance_id) = item.instance_id else {
            self.found.dropped = self.found.dropped.saturating_add(1);
            return;
        };
        if !bounded::is_instance_id(&instance_id) {
            self.found.dropped = self.found.dropped.saturating_add(1);
            return;
        }
        let found = FoundInstance {
            instance_id,
            name: item.name,
            status: item.status,
            tags: item.tags.unwrap_or_default(),
        };
        if !self.filter.confirmed_by(&found) {
            self.found.dropped = self.found.dropped.saturating_add(1);
            return;
        }
        if self.seen.insert(found.instance_id.clone()) {
            self.found.instances.push(found);
        }
    }
}

/// The `instances` list of an owner lookup, one bounded item at a time.
struct FoundItems<'p, 'f>(&'p mut FoundPage<'f>);

impl<'de> DeserializeSeed<'de> for FoundItems<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FoundItems<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of instances")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.listed = true;
        loop {
            if self.0.received >= FIND_LIMIT as usize {
                // More than asked for: skipped unbuilt, and said so.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                self.0.overlong = true;
                continue;
            }
            match seq.next_element_seed(FoundItem)? {
                Some(item) => {
                    self.0.received += 1;
                    self.0.take(item);
                }
                None => break,
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.listed = true;
        Ok(())
    }
}

/// A whole owner-lookup answer: `instances` and `instance_num`, the rest skipped.
struct FoundAnswer<'p, 'f>(&'p mut FoundPage<'f>);

impl<'de> DeserializeSeed<'de> for FoundAnswer<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FoundAnswer<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list answer (an object with instances)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "instances" => map.next_value_seed(FoundItems(&mut *self.0))?,
                "instance_num" => {
                    let count = map.next_value_seed(Text {
                        max: 32,
                        numbers: true,
                    })?;
                    self.0.instance_num = count.and_then(|n| n.trim().parse::<u64>().ok());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An owner-lookup page. No `instances` list (or one that is not a list) is a
/// decode error: "nothing found" on the word of an answer that did not say would
/// let the caller create a second instance.
fn decode_found(body: &[u8], filter: &InstanceFilter) -> Result<FoundInstances, String> {
    let mut page = FoundPage {
        filter,
        found: FoundInstances::default(),
        seen: HashSet::new(),
        received: 0,
        overlong: false,
        listed: false,
        instance_num: None,
    };
    decode_with(body, FoundAnswer(&mut page))?;
    if !page.listed {
        return Err("the answer has no instances list".into());
    }
    let received = page.received as u64;
    // A full page may hide more; so may a count above what came.
    page.found.truncated = page.overlong
        || received >= u64::from(FIND_LIMIT)
        || page.instance_num.is_some_and(|n| n > received);
    Ok(page.found)
}

/// A ResetPassword answer as it is read: each field a bounded scalar; a number
/// `code` is written out (`1` reads as `"1"`).
#[derive(Default)]
struct ResetFields {
    code: Option<String>,
    message: Option<String>,
    ext_message: Option<String>,
}

struct ResetAnswerSeed;

impl<'de> DeserializeSeed<'de> for ResetAnswerSeed {
    type Value = ResetFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResetAnswerSeed {
    type Value = ResetFields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reset answer (an object with code)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let message = Text {
            max: RESET_MESSAGE_CHARS,
            numbers: false,
        };
        let mut fields = ResetFields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "code" => {
                    fields.code = map.next_value_seed(Text {
                        max: RESET_CODE_CHARS,
                        numbers: true,
                    })?
                }
                "message" => fields.message = map.next_value_seed(message)?,
                "ext_message" => fields.ext_message = map.next_value_seed(message)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A ResetPassword answer: Ok for code `"1"`; a refusal (see
/// [`RESET_REFUSED_PREFIX`]) for any other code; a decode error when there is no
/// code to read (null, empty, not a string or a number, or no object at all), since
/// such an answer does not say whether the password was reset.
fn decode_reset(body: &[u8], request_id: &Option<String>) -> Result<ResetPasswordAnswer, DcsError> {
    let decode_error = |message: String| DcsError::Decode {
        message,
        request_id: request_id.clone(),
    };
    let fields = decode_with(body, ResetAnswerSeed).map_err(decode_error)?;
    let code = fields
        .code
        .as_deref()
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(str::to_string)
        .ok_or_else(|| decode_error("the reset answer has no code".into()))?;
    let message = fields.message.filter(|m| !m.trim().is_empty());
    let ext_message = fields.ext_message.filter(|m| !m.trim().is_empty());
    if code == RESET_SUCCESS_CODE {
        return Ok(ResetPasswordAnswer {
            code,
            message,
            ext_message,
        });
    }
    let error_msg = match (message, ext_message) {
        (Some(message), Some(ext)) if ext != message => format!("{message} ({ext})"),
        (Some(message), _) => message,
        (None, Some(ext)) => ext,
        (None, None) => format!("the password was not reset (code {code:?}, not \"1\")"),
    };
    Err(DcsError::Client(ApiError {
        status: 200,
        error_code: Some(format!("{RESET_REFUSED_PREFIX}{code}")),
        error_msg: Some(error_msg),
        request_id: request_id.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "68d5745e-6af2-40e4-945d-fe449be00148";
    const UID: &str = "2b7e9f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b";

    fn body() -> CreateInstanceBody {
        CreateInstanceBody {
            name: "orders-cache".into(),
            engine: "Redis".into(),
            engine_version: Some("6.0".into()),
            capacity: 2.0,
            spec_code: "redis.ha.xu1.large.r2.2".into(),
            az_codes: vec!["cn-north-4a".into()],
            vpc_id: "vpc".into(),
            subnet_id: "subnet".into(),
            password: Some(SecretString::new("Sim-Passw0rd")),
            tags: vec![ResourceTag::owner(UID)],
            ..Default::default()
        }
    }

    fn api(status: u16, code: &str) -> ApiError {
        ApiError {
            status,
            error_code: Some(code.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_body_uses_the_api_field_names_and_omits_what_is_unset() {
        let full = CreateInstanceBody {
            security_group_id: Some("sg".into()),
            port: Some(6380),
            no_password_access: Some(false),
            description: Some("d".into()),
            maintain_begin: Some("22:00:00".into()),
            maintain_end: Some("02:00:00".into()),
            enterprise_project_id: Some("0".into()),
            ..body()
        };
        let value = serde_json::to_value(&full).unwrap();
        assert_eq!(
            value,
            json!({
                "name": "orders-cache", "engine": "Redis", "engine_version": "6.0",
                "capacity": 2, "spec_code": "redis.ha.xu1.large.r2.2",
                "az_codes": ["cn-north-4a"], "vpc_id": "vpc", "subnet_id": "subnet",
                "security_group_id": "sg", "port": 6380, "password": "Sim-Passw0rd",
                "no_password_access": false,
                "tags": [{"key": "dcs-operator-uid", "value": UID}],
                "description": "d", "maintain_begin": "22:00:00", "maintain_end": "02:00:00",
                "enterprise_project_id": "0",
            })
        );
        let minimal = CreateInstanceBody {
            engine_version: None,
            password: None,
            tags: Vec::new(),
            ..body()
        };
        let text = serde_json::to_string(&minimal).unwrap();
        for absent in [
            "engine_version",
            "password",
            "tags",
            "port",
            "security_group_id",
            "bss_param",
            "instance_num",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }

    #[test]
    fn capacity_is_a_json_number_and_never_null() {
        let text = |capacity: f64| {
            serde_json::to_value(CreateInstanceBody { capacity, ..body() })
                .map(|v| v["capacity"].to_string())
        };
        assert_eq!(text(2.0).unwrap(), "2");
        assert_eq!(text(0.125).unwrap(), "0.125");
        assert_eq!(text(0.5).unwrap(), "0.5");
        assert_eq!(text(1024.0).unwrap(), "1024");
        for bad in [f64::NAN, f64::INFINITY, 0.0, -2.0] {
            assert!(text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let shown = format!("{:?}", body());
        assert!(!shown.contains("Sim-Passw0rd"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("orders-cache"));
        let pretty = format!("{:#?}", body());
        assert!(!pretty.contains("Sim-Passw0rd"));
        let none = format!(
            "{:?}",
            CreateInstanceBody {
                password: None,
                ..body()
            }
        );
        assert!(none.contains("password: None"), "{none}");
    }

    #[test]
    fn the_resize_body_writes_capacity_as_a_number_and_omits_what_is_unset() {
        let resize = |new_capacity: f64| ResizeInstanceBody {
            spec_code: "redis.ha.xu1.large.r2.4".into(),
            new_capacity,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(resize(4.0)).unwrap(),
            json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 4})
        );
        assert_eq!(
            serde_json::to_string(&resize(0.5)).unwrap(),
            r#"{"spec_code":"redis.ha.xu1.large.r2.4","new_capacity":0.5}"#
        );
        assert_eq!(
            serde_json::to_value(resize(0.125)).unwrap()["new_capacity"].to_string(),
            "0.125"
        );
        for bad in [f64::NAN, f64::NEG_INFINITY, 0.0, -4.0] {
            assert!(serde_json::to_vec(&resize(bad)).is_err(), "{bad}");
        }
        let full = ResizeInstanceBody {
            change_type: Some("createReplication".into()),
            execute_immediately: Some(false),
            ..resize(8.0)
        };
        assert_eq!(
            serde_json::to_value(full).unwrap(),
            json!({
                "spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 8,
                "change_type": "createReplication", "execute_immediately": false,
            })
        );
    }

    #[test]
    fn the_modify_body_sends_only_what_is_set() {
        let empty = ModifyInstanceBody::default();
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        let port = ModifyInstanceBody {
            port: Some(6380),
            ..Default::default()
        };
        assert!(!port.is_empty());
        assert_eq!(serde_json::to_string(&port).unwrap(), r#"{"port":6380}"#);
        let full = ModifyInstanceBody {
            name: Some("orders-cache".into()),
            description: Some(String::new()),
            maintain_begin: Some("02:00:00".into()),
            maintain_end: Some("06:00:00".into()),
            security_group_id: Some("sg".into()),
            port: None,
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({
                "name": "orders-cache", "description": "",
                "maintain_begin": "02:00:00", "maintain_end": "06:00:00",
                "security_group_id": "sg",
            })
        );
        // An empty description is a change (to clear it), not "nothing".
        assert!(
            !ModifyInstanceBody {
                description: Some(String::new()),
                ..Default::default()
            }
            .is_empty()
        );
    }

    #[test]
    fn the_reset_body_shows_the_password_on_the_wire_only() {
        let secret = SecretString::new("Sim-Passw0rd");
        let body = ResetPasswordBody {
            new_password: Some(&secret),
            no_password_access: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"new_password": "Sim-Passw0rd"})
        );
        for shown in [format!("{body:?}"), format!("{body:#?}")] {
            assert!(!shown.contains("Sim-Passw0rd"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let free = ResetPasswordBody {
            new_password: None,
            no_password_access: Some(true),
        };
        assert_eq!(
            serde_json::to_value(&free).unwrap(),
            json!({"no_password_access": true})
        );
        assert!(format!("{free:?}").contains("new_password: None"));
    }

    fn reset(body: &str) -> Result<ResetPasswordAnswer, DcsError> {
        decode_reset(body.as_bytes(), &Some("r-1".into()))
    }

    #[test]
    fn a_reset_answer_succeeds_only_with_code_1() {
        let ok = reset(
            r#"{"code": "1", "message": "Reset DCS instance password successfully.", "ext_message": "", "lock_time": null}"#,
        )
        .unwrap();
        assert_eq!(ok.code, "1");
        assert_eq!(
            ok.message.as_deref(),
            Some("Reset DCS instance password successfully.")
        );
        assert_eq!(ok.ext_message, None);
        // A number in the wild, padding, no message at all.
        assert_eq!(reset(r#"{"code": 1}"#).unwrap().code, "1");
        assert_eq!(reset(r#"{"code": " 1 ", "x": [[{}]]}"#).unwrap().code, "1");

        // Locked: a refusal carrying the code and the message.
        let locked = reset(
            r#"{"code": "3", "message": "The instance password is locked.", "ext_message": "", "lock_time_left": "299"}"#,
        )
        .unwrap_err();
        let DcsError::Client(refusal) = &locked else {
            panic!("{locked:?}");
        };
        assert_eq!(refusal.status, 200);
        assert_eq!(refusal.error_code.as_deref(), Some("ResetPassword.code.3"));
        assert_eq!(
            refusal.error_msg.as_deref(),
            Some("The instance password is locked.")
        );
        assert_eq!(refusal.request_id.as_deref(), Some("r-1"));
        assert_eq!(reset_refusal_code(&locked), Some("3"));
        assert_eq!(
            write_outcome::<()>(&Err(locked.clone())),
            WriteOutcome::Refused
        );
        assert_eq!(locked.reason(), "RequestRefused");
        assert!(!is_busy(&locked));
        assert!(!locked.is_transient());
        let shown = locked.to_string();
        assert!(
            shown.contains("ResetPassword.code.3") && shown.contains("locked"),
            "{shown}"
        );

        let numeric = reset(r#"{"code": 3}"#).unwrap_err();
        assert_eq!(reset_refusal_code(&numeric), Some("3"));
        assert!(
            numeric
                .api()
                .and_then(|api| api.error_msg.as_deref())
                .is_some_and(|m| m.contains("not reset")),
            "{numeric}"
        );
        let both = reset(r#"{"code": "5", "message": "m", "ext_message": "ext"}"#).unwrap_err();
        assert_eq!(
            both.api().and_then(|api| api.error_msg.as_deref()),
            Some("m (ext)")
        );
        let ext_only = reset(r#"{"code": "5", "ext_message": "ext"}"#).unwrap_err();
        assert_eq!(
            ext_only.api().and_then(|api| api.error_msg.as_deref()),
            Some("ext")
        );
        // Bounded: a huge code is cut (so never "1"), a huge message too.
        let huge = reset(
            &json!({"code": "1".repeat(1 << 20), "message": "m".repeat(1 << 20)}).to_string(),
        )
        .unwrap_err();
        let cut = huge.api().unwrap();
        assert!(cut.error_code.as_ref().unwrap().chars().count() < 64);
        assert!(cut.error_msg.as_ref().unwrap().chars().count() <= 512);
        // Only other errors carry no reset code.
        assert_eq!(
            reset_refusal_code(&DcsError::Client(api(400, "ResetPassword.code.3"))),
            None
        );
        assert_eq!(
            reset_refusal_code(&DcsError::Client(api(200, "DCS.4019"))),
            None
        );
    }

    #[test]
    fn a_reset_answer_without_a_code_is_a_decode_error() {
        for body in [
            "",
            "  ",
            "null",
            "[]",
            "{}",
            r#"{"code": null}"#,
            r#"{"code": ""}"#,
            r#"{"code": "  "}"#,
            r#"{"code": true}"#,
            r#"{"code": {"value": "1"}}"#,
            r#"{"code": ["1"]}"#,
            r#"{"result": "success", "message": "ok"}"#,
            r#"{"code": "1""#,
            r#"{"code": "1"} trailing"#,
            "<html>ok</html>",
        ] {
            let error = reset(body).unwrap_err();
            assert!(
                matches!(error, DcsError::Decode { .. }),
                "{body}: {error:?}"
            );
            assert_eq!(error.request_id(), Some("r-1"));
            assert_eq!(write_outcome::<()>(&Err(error)), WriteOutcome::Unknown);
        }
    }

    #[test]
    fn write_outcomes() {
        let outcome = |error: DcsError| write_outcome::<()>(&Err(error));
        assert_eq!(
            write_outcome(&Ok::<_, DcsError>(())),
            WriteOutcome::Accepted
        );
        for refused in [
            DcsError::Client(api(400, "DCS.4927")),
            DcsError::Client(api(409, "X")),
            DcsError::Unauthorized(api(401, "APIG.0301")),
            DcsError::Forbidden(api(403, "DCS.2003")),
            DcsError::NotFound(api(404, "DCS.3022")),
            DcsError::NotFound(api(404, "APIGW.0101")),
        ] {
            assert_eq!(outcome(refused.clone()), WriteOutcome::Refused, "{refused}");
        }
        for not_sent in [
            DcsError::Throttled {
                retry_after: None,
                api: api(429, "APIG.0308"),
            },
            DcsError::Unsendable {
                message: "bad header".into(),
            },
        ] {
            assert_eq!(
                outcome(not_sent.clone()),
                WriteOutcome::NotSent,
                "{not_sent}"
            );
        }
        for unknown in [
            DcsError::Server(api(500, "DCS.5000")),
            DcsError::Server(api(503, "503")),
            DcsError::Transport {
                message: "reset".into(),
                timeout: false,
            },
            DcsError::Transport {
                message: "timed out".into(),
                timeout: true,
            },
            DcsError::Decode {
                message: "no id".into(),
                request_id: None,
            },
        ] {
            assert_eq!(outcome(unknown.clone()), WriteOutcome::Unknown, "{unknown}");
        }
    }

    #[test]
    fn busy_codes() {
        for code in [
            "DCS.4026",
            "DCS.4049",
            "DCS.4017",
            "DCS.4111",
            "DCS.4113",
            "DCS.4114",
            "DCS.4115",
            "DCS.4116",
            "DCS.4117",
            "DCS.4118",
            "DCS.4120",
            "DCS.4096",
            "DCS.4097",
            "DCS.4104",
            "DCS.4099",
            "DCS.4121",
            "DCS.4231",
            "DCS.4975",
            "CBC.99003651",
            "dcs.4026",
            "111400026",
            "111400049",
            "111400017",
            "111400099",
        ] {
            assert!(is_busy(&DcsError::Client(api(400, code))), "{code}");
        }
        for code in [
            "DCS.4927",
            "DCS.4112",
            "DCS.4119",
            "DCS.4035",
            "DCS.3022",
            "111400002",
        ] {
            assert!(!is_busy(&DcsError::Client(api(400, code))), "{code}");
        }
        // Only a refusal is "busy": the same code on a 5xx or a 404 is something else.
        assert!(!is_busy(&DcsError::Server(api(500, "DCS.4026"))));
        assert!(!is_busy(&DcsError::NotFound(api(404, "DCS.4026"))));
        assert!(!is_busy(&DcsError::Transport {
            message: "DCS.4026".into(),
            timeout: false
        }));
    }

    #[test]
    fn a_create_answer_without_a_usable_id_is_a_decode_error() {
        let ok = decode_created(
            json!({"instances": [{"instance_id": ID, "instance_name": "orders-cache"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.instance_id, ID);
        assert_eq!(ok.instance_name.as_deref(), Some("orders-cache"));
        assert_eq!(ok.order_id, None);
        let with_order = decode_created(
            json!({"order_id": "o-1", "instances": [{"instance_id": ID}, {"instance_id": "x"}], "extra": [[{}]]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(with_order.order_id.as_deref(), Some("o-1"));
        assert_eq!(with_order.instance_id, ID);

        let long_id = "a".repeat(1 << 20);
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"   ".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{}".to_vec(),
            b"<html>ok</html>".to_vec(),
            br#"{"instances": []}"#.to_vec(),
            br#"{"instances": null}"#.to_vec(),
            br#"{"instances": "x"}"#.to_vec(),
            br#"{"instances": [{}]}"#.to_vec(),
            br#"{"instances": [{"instance_id": null}]}"#.to_vec(),
            br#"{"instances": [{"instance_id": 12}]}"#.to_vec(),
            br#"{"instances": [{"instance_id": "not-a-uuid"}]}"#.to_vec(),
            br#"{"instances": [{"instance_id": "68D5745E-6AF2-40E4-945D-FE449BE00148"}]}"#
                .to_vec(),
            br#"{"instances": [{"instance_id": "x"}, {"instance_id": "68d5745e-6af2-40e4-945d-fe449be00148"}]}"#
                .to_vec(),
            json!({"instances": [{"instance_id": long_id}]})
                .to_string()
                .into_bytes(),
            br#"{"instances": [{"instance_id": "68d5745e-6af2-40e4-945d-fe449be00148"}]"#
                .to_vec(),
            br#"{"instances": [{"instance_id": "68d5745e-6af2-40e4-945d-fe449be00148"}]} x"#
                .to_vec(),
        ];
        for body in bad {
            let error = decode_created(&body).unwrap_err();
            assert!(error.len() < 300, "{error}");
        }
    }

    #[test]
    fn show_tags_stays_bounded() {
        let tags = decode_tags(
            json!({"tags": [{"key": OWNER_TAG_KEY, "value": UID}, {"key": "env", "value": "prod"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            tags,
            vec![ResourceTag::owner(UID), ResourceTag::new("env", "prod")]
        );
        assert!(tags[0].is_owner(UID));
        assert!(!tags[0].is_owner(""));
        assert!(!tags[1].is_owner(UID));

        let many: Vec<_> = (0..10_000)
            .map(|n| json!({"key": format!("k{n}"), "value": "v"}))
            .collect();
        let kept = decode_tags(json!({"tags": many}).to_string().as_bytes()).unwrap();
        assert_eq!(kept.len(), MAX_TAGS_KEPT);
        assert_eq!(kept[63].key, "k63");

        // A 1 MiB key that starts with the owner key is dropped, never cut to it.
        let huge_key = format!("{OWNER_TAG_KEY}{}", "x".repeat(1 << 20));
        let huge_value = format!("{UID}{}", "y".repeat(1 << 20));
        let at_limit = "k".repeat(MAX_TAG_KEY_CHARS);
        let tags = decode_tags(
            json!({"tags": [
                {"key": huge_key, "value": UID},
                {"key": OWNER_TAG_KEY, "value": huge_value},
                {"key": at_limit, "value": "v".repeat(MAX_TAG_VALUE_CHARS)},
                {"key": "k".repeat(MAX_TAG_KEY_CHARS + 1), "value": "v"},
                {"key": "no-value"},
                {"key": "null-value", "value": null},
                {"key": "number", "value": 7},
                {"key": "", "value": "v"},
                {"value": "v"},
                {"key": ["nested"], "value": "v"},
                "not a tag",
                [1, 2],
                null,
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let keys: Vec<&str> = tags.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec![at_limit.as_str(), "no-value", "null-value"]);
        assert!(!tags.iter().any(|t| t.key == OWNER_TAG_KEY));
        assert_eq!(tags[1].value, "");

        assert_eq!(decode_tags(br#"{"tags": null}"#).unwrap(), vec![]);
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"tags": "x"}"#,
            br#"{"tags": {"key": "k"}}"#,
            br#"{"tags": [{"key": "k", "value": "v"}"#,
        ] {
            assert!(
                decode_tags(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn item(id: &str, name: &str, tags: serde_json::Value) -> serde_json::Value {
        json!({"instance_id": id, "name": name, "status": "RUNNING", "tags": tags, "ip": "10.0.0.1"})
    }

    #[test]
    fn found_instances_are_re_checked_and_bounded() {
        let owner = InstanceFilter::owner(UID);
        let owned = json!([{"key": OWNER_TAG_KEY, "value": UID}]);
        let other = "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f";
        let page = json!({"instance_num": 5, "instances": [
            item(ID, "orders-cache", owned.clone()),
            item(ID, "orders-cache", owned.clone()),
            item(other, "foreign", json!([{"key": OWNER_TAG_KEY, "value": "someone-else"}])),
            item("68D5745E-6AF2-40E4-945D-FE449BE00148", "upper", owned.clone()),
            {"name": "no id", "tags": owned.clone()},
        ]});
        let found = decode_found(page.to_string().as_bytes(), &owner).unwrap();
        assert_eq!(found.instances.len(), 1);
        assert_eq!(found.instances[0].instance_id, ID);
        assert_eq!(found.instances[0].status.as_deref(), Some("RUNNING"));
        assert!(found.instances[0].has_tag(OWNER_TAG_KEY, UID));
        assert_eq!(found.dropped, 3);
        assert!(!found.truncated);

        let by_name = InstanceFilter::ExactName("orders-cache".into());
        let page = json!({"instances": [item(ID, "orders-cache", json!(null)), item(other, "orders-cache-2", json!([]))]});
        let found = decode_found(page.to_string().as_bytes(), &by_name).unwrap();
        assert_eq!(found.instances.len(), 1);
        assert_eq!(found.dropped, 1);

        // A count above what came, a full page, a page longer than asked for.
        let page =
            json!({"instance_num": 11, "instances": [item(ID, "orders-cache", owned.clone())]});
        assert!(
            decode_found(page.to_string().as_bytes(), &owner)
                .unwrap()
                .truncated
        );
        let million: Vec<_> = (0..100_000).map(|_| json!({})).collect();
        let page = json!({"instances": million});
        let found = decode_found(page.to_string().as_bytes(), &owner).unwrap();
        assert!(found.truncated);
        assert_eq!(found.dropped, FIND_LIMIT);
        let long_name = "n".repeat(1 << 20);
        let page = json!({"instances": [item(ID, &long_name, owned.clone())]});
        let found = decode_found(page.to_string().as_bytes(), &owner).unwrap();
        assert_eq!(
            found.instances[0].name.as_ref().unwrap().chars().count(),
            128
        );

        assert_eq!(
            decode_found(br#"{"instances": null}"#, &owner).unwrap(),
            FoundInstances::default()
        );
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"instance_num": 0}"#,
            br#"{"instances": "x"}"#,
            br#"{"instances": {}}"#,
            br#"{"instances": [{}"#,
        ] {
            assert!(
                decode_found(bad, &owner).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn filters_refuse_what_would_list_everything() {
        let query = InstanceFilter::owner(UID).query().unwrap();
        assert!(query.contains(&("tags".into(), format!("{OWNER_TAG_KEY}={UID}"))));
        assert!(query.contains(&("include_failure".into(), "true".into())));
        assert!(query.contains(&("limit".into(), "10".into())));
        assert!(query.contains(&("offset".into(), "0".into())));
        let query = InstanceFilter::ExactName("orders-cache".into())
            .query()
            .unwrap();
        assert!(query.contains(&("name".into(), "orders-cache".into())));
        assert!(query.contains(&("name_equal".into(), "true".into())));
        for bad in [
            InstanceFilter::ExactName(String::new()),
            InstanceFilter::owner(""),
            InstanceFilter::Tag {
                key: String::new(),
                value: "v".into(),
            },
            InstanceFilter::Tag {
                key: "a=b".into(),
                value: "v".into(),
            },
            InstanceFilter::Tag {
                key: "k".into(),
                value: "v,other=x".into(),
            },
        ] {
            assert!(bad.query().is_err(), "{bad:?}");
        }
        assert!(check_instance_id(ID).is_ok());
        for bad in ["", "../x", "68D5745E-6AF2-40E4-945D-FE449BE00148"] {
            assert!(matches!(
                check_instance_id(bad),
                Err(DcsError::Unsendable { .. })
            ));
        }
    }
}
