{{/* The chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "dcs-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. A release named like the chart (the usual
`helm install dcs-operator ...`) is not doubled into "dcs-operator-dcs-operator".
*/}}
{{- define "dcs-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dcs-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: fixed for the life of a release (a Deployment's selector is immutable). */}}
{{- define "dcs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dcs-operator.labels" -}}
helm.sh/chart: {{ include "dcs-operator.chart" . }}
{{ include "dcs-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dcs-operator.serviceAccountName" -}}
{{- default (include "dcs-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "dcs-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Lease's name: one per release, so sharded releases elect separate leaders. */}}
{{- define "dcs-operator.leaseName" -}}
{{- default (include "dcs-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "dcs-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.leaseNamespace }}
{{- end }}

{{/*
What the operator does in each namespace it serves, for a ClusterRole (all
namespaces) or one Role per namespace (watchNamespaces). One comment per rule: why.
*/}}
{{- define "dcs-operator.rules" -}}
# Watch the DcsInstances it serves (the controller's list+watch; get for re-reads;
# list also finds the Delete-policy DcsInstances still using a credentials Secret
# before its in-use finalizer is released).
- apiGroups: ["dcs.operator.dev"]
  resources: ["dcsinstances"]
  verbs: ["get", "list", "watch"]
# Patch a DcsInstance's metadata (managementPolicy Manage): the finalizer
# dcs.operator.dev/cleanup and the lifecycle annotations
# dcs.operator.dev/create-attempt, instance-id and create-sent-at, each write
# preconditioned on the resourceVersion it read. The operator never edits spec.
- apiGroups: ["dcs.operator.dev"]
  resources: ["dcsinstances"]
  verbs: ["patch"]
# Write status, by server-side apply (a PATCH); never the spec.
- apiGroups: ["dcs.operator.dev"]
  resources: ["dcsinstances/status"]
  verbs: ["patch"]
# Secrets: read credentials and password Secrets a DcsInstance names, watch the
# connection Secrets it owns, create them (POST) and update them (merge PATCH; no
# "update" needed). The same patch adds and removes the finalizer
# dcs.operator.dev/in-use on a credentials Secret that a deletionPolicy: Delete
# DcsInstance names, so deleting the namespace cannot remove the credentials before
# the instance is cleaned up. RBAC cannot scope by label or name here, so watching
# Secrets means being able to read EVERY Secret in scope: with watchNamespaces empty
# that is every Secret in the cluster. Set watchNamespaces for a namespaced install.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Events about DcsInstances: the operator creates an Event, then patches its series
# count when the same Event repeats within minutes.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The directory the projected token volume is mounted at: the token file's. */}}
{{- define "dcs-operator.tokenDir" -}}
{{- dir .Values.operatorIdentity.projectedToken.path }}
{{- end }}

{{/*
Refuses keyless settings that cannot work or would weaken it, at install time
rather than in the operator's log. Renders nothing.
*/}}
{{- define "dcs-operator.validateIdentity" -}}
{{- $apiServerAudiences := list "https://kubernetes.default.svc.cluster.local" "https://kubernetes.default.svc" "kubernetes.default.svc" "kubernetes.default.svc.cluster.local" }}
{{- $identity := .Values.identity }}
{{- if $identity.namespaces }}
{{- if not $identity.audience }}
{{- fail "identity.audience is required with identity.namespaces: a dedicated audience (the IdP's client_id), never the API server's" }}
{{- end }}
{{- if .Values.watchNamespaces }}
{{- range $identity.namespaces }}
{{- if not (has . $.Values.watchNamespaces) }}
{{- fail (printf "identity.namespaces: %s is not in watchNamespaces (the operator would hold a token grant there for nothing)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if has $identity.audience $apiServerAudiences }}
{{- fail (printf "identity.audience %s is the API server's: tokens of it would be Kubernetes credentials; use the IdP's client_id" $identity.audience) }}
{{- end }}
{{- $token := .Values.operatorIdentity.projectedToken }}
{{- if $token.enabled }}
{{- if not $token.audience }}
{{- fail "operatorIdentity.projectedToken.audience is required: a dedicated audience (the IdP's client_id), never the API server's" }}
{{- end }}
{{- if has $token.audience $apiServerAudiences }}
{{- fail (printf "operatorIdentity.projectedToken.audience %s is the API server's: use the IdP's client_id" $token.audience) }}
{{- end }}
{{- if lt (int $token.expirationSeconds) 600 }}
{{- fail "operatorIdentity.projectedToken.expirationSeconds must be at least 600 (Kubernetes refuses less)" }}
{{- end }}
{{- if not (isAbs $token.path) }}
{{- fail "operatorIdentity.projectedToken.path must be an absolute path" }}
{{- end }}
{{- $tokenDir := include "dcs-operator.tokenDir" . }}
{{- if eq $tokenDir "/" }}
{{- fail "operatorIdentity.projectedToken.path must be in a directory of its own, not /" }}
{{- end }}
{{- if .Values.defaultCredentials.existingSecret }}
{{- fail "operatorIdentity.projectedToken with defaultCredentials.existingSecret: --credentials-dir comes first in the credential chain, so the token would never be used; set one of them" }}
{{- end }}
{{- $taken := list "/var/run/secrets/kubernetes.io/serviceaccount" }}
{{- if .Values.demo.enabled }}
{{- $taken = append $taken "/etc/dcs-operator/demo" }}
{{- end }}
{{- range $taken }}
{{- if or (hasPrefix (printf "%s/" $tokenDir) (printf "%s/" .)) (hasPrefix (printf "%s/" .) (printf "%s/" $tokenDir)) }}
{{- fail (printf "operatorIdentity.projectedToken.path: its directory %s (the volume's mount point) overlaps the mount at %s; give the token a directory of its own" $tokenDir .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.operatorIdentity.env }}
{{- if has $name (list "HUAWEICLOUD_SDK_AK" "HUAWEICLOUD_SDK_SK" "HUAWEICLOUD_SDK_SECURITY_TOKEN" "HUAWEICLOUD_OIDC_ID_TOKEN") }}
{{- fail (printf "operatorIdentity.env.%s: no keys or tokens in values (they end up in the Deployment); use defaultCredentials.existingSecret, or a token file" $name) }}
{{- end }}
{{- end }}
{{- end }}
