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
# Events about DcsInstances: kube's recorder creates an Event, then patches it
# (count, lastTimestamp) when the same event repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
