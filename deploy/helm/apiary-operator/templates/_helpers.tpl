{{/*
Shared names and labels of Apiary's operator chart.
*/}}

{{/* The chart name: `toolhive-operator` unless overridden (it becomes app.kubernetes.io/name). */}}
{{- define "operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object. For release `toolhive-operator` it is `toolhive-operator`, which gives
ToolHive's names: Deployment and ServiceAccount `toolhive-operator`, ClusterRole
`toolhive-operator-manager-role`.
*/}}
{{- define "operator.fullname" -}}
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

{{/* `name-version` for the helm.sh/chart label. */}}
{{- define "operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them (Deployment selectors are immutable). */}}
{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "operator.labels" -}}
helm.sh/chart: {{ include "operator.chart" . }}
{{ include "operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: apiary
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The manager ClusterRole (ToolHive's name). */}}
{{- define "operator.managerRoleName" -}}
{{- printf "%s-manager-role" (include "operator.fullname" .) }}
{{- end }}

{{/* The Lease the operator holds to lead; fixed in the binary (ToolHive's name). */}}
{{- define "operator.leaseName" -}}
toolhive-operator-leader-election
{{- end }}

{{/*
Namespace scope: the allowed namespaces, checked. Fails the render when the scope is unknown or
namespace scope has no namespace, rather than installing an operator that watches nothing.
*/}}
{{- define "operator.watchNamespaces" -}}
{{- $scope := .Values.operator.rbac.scope }}
{{- if not (has $scope (list "cluster" "namespace")) }}
{{- fail (printf "operator.rbac.scope must be \"cluster\" or \"namespace\", not %q" (toString $scope)) }}
{{- end }}
{{- if eq $scope "namespace" }}
{{- if not .Values.operator.rbac.allowedNamespaces }}
{{- fail "operator.rbac.scope=namespace needs at least one namespace in operator.rbac.allowedNamespaces" }}
{{- end }}
{{- join "," (uniq .Values.operator.rbac.allowedNamespaces) }}
{{- end }}
{{- end }}

{{/* Base name of the gateway's objects (Deployment, Service, ServiceAccount, ClusterRole). */}}
{{- define "gateway.fullname" -}}
{{- printf "%s-gateway" (include "operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the gateway pods. Its own app.kubernetes.io/name, so the seeds'
`-l app.kubernetes.io/name=toolhive-operator` still selects exactly the operator pods.
*/}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: apiary-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every gateway object. */}}
{{- define "gateway.labels" -}}
helm.sh/chart: {{ include "operator.chart" . }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: apiary
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* `gateway.gatewayRef`, checked: NAMESPACE/NAME. */}}
{{- define "gateway.ref" -}}
{{- $ref := toString .Values.gateway.gatewayRef }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$" $ref) }}
{{- fail (printf "gateway.gatewayRef must be NAMESPACE/NAME of a Gateway, not %q" $ref) }}
{{- end }}
{{- $ref }}
{{- end }}
