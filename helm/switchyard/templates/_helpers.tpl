{{/* Names are cut to 63 characters: the limit of DNS labels and label values. */}}

{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.fullname" -}}
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

{{- define "switchyard.controlPlane.fullname" -}}
{{- printf "%s-control-plane" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.controlPlane.headless" -}}
{{- printf "%s-control-plane-headless" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.dataPlane.fullname" -}}
{{- printf "%s-data-plane" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.etcd.fullname" -}}
{{- printf "%s-etcd" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.bootstrap.fullname" -}}
{{- printf "%s-bootstrap" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "ctx" $ "component" "...") */}}
{{- define "switchyard.labels" -}}
helm.sh/chart: {{ include "switchyard.chart" .ctx }}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- end }}

{{/* Selector labels: stable across upgrades, distinct per component. */}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchyard.image" -}}
{{- $tag := .image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/* The Secret and key holding the database URL. */}}
{{- define "switchyard.database.secretName" -}}
{{- if .Values.controlPlane.database.url }}
{{- printf "%s-database" (include "switchyard.controlPlane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.controlPlane.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "switchyard.database.secretKey" -}}
{{- if .Values.controlPlane.database.url }}url{{ else }}{{ .Values.controlPlane.database.existingSecretKey }}{{ end }}
{{- end }}

{{/* etcd endpoints the control plane elects its leader on, comma-separated. */}}
{{- define "switchyard.etcd.endpoints" -}}
{{- if .Values.etcd.bundled.enabled }}
{{- printf "http://%s.%s.svc:2379" (include "switchyard.etcd.fullname" .) .Release.Namespace }}
{{- else }}
{{- join "," .Values.etcd.endpoints }}
{{- end }}
{{- end }}

{{/* Control-plane URLs for the data planes, comma-separated. */}}
{{- define "switchyard.controlPlane.urls" -}}
{{- if .Values.dataPlane.controlPlaneUrls }}
{{- join "," .Values.dataPlane.controlPlaneUrls }}
{{- else }}
{{- printf "%s://%s.%s.svc:%d" (include "switchyard.scheme" .) (include "switchyard.controlPlane.fullname" .) .Release.Namespace (int64 .Values.controlPlane.grpcPort) }}
{{- end }}
{{- end }}

{{/* Where a provider key from dataPlane.providerKeys is mounted. */}}
{{- define "switchyard.providerKeys.dir" -}}
/var/run/secrets/switchyard/providers
{{- end }}

{{/* Where the control plane's admin token is mounted. */}}
{{- define "switchyard.adminToken.dir" -}}
/var/run/secrets/switchyard/admin
{{- end }}

{{/* Where the secrets of bootstrap.apiKeys are mounted, one directory per key. */}}
{{- define "switchyard.apiKeys.dir" -}}
/var/run/secrets/switchyard/api-keys
{{- end }}

{{/* Chart-level checks JSON Schema cannot express. */}}
{{- define "switchyard.validate" -}}
{{- $dp := .Values.dataPlane }}
{{- if eq (int64 .Values.controlPlane.metricsPort) (int64 .Values.controlPlane.grpcPort) }}
{{- fail "controlPlane.metricsPort must differ from controlPlane.grpcPort: metrics have a listener of their own" }}
{{- end }}
{{- if gt (int64 $dp.traceSpoolMemory) (int64 $dp.traceSpool) }}
{{- fail "dataPlane.traceSpoolMemory must not exceed dataPlane.traceSpool" }}
{{- end }}
{{- if and $dp.autoscaling.enabled (gt (int64 $dp.autoscaling.minReplicas) (int64 $dp.autoscaling.maxReplicas)) }}
{{- fail "dataPlane.autoscaling.minReplicas must not exceed dataPlane.autoscaling.maxReplicas" }}
{{- end }}
{{- if and $dp.autoscaling.enabled (not (dig "requests" "cpu" "" $dp.resources)) }}
{{- fail "dataPlane.autoscaling needs dataPlane.resources.requests.cpu: CPU utilization is a share of it" }}
{{- end }}
{{- if and .Values.bootstrap.apiKeys (not .Values.bootstrap.enabled) }}
{{- fail "bootstrap.apiKeys needs bootstrap.enabled: keys are registered from the bootstrap file" }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints, each selecting the component's own pods unless it
names a labelSelector itself; pass (dict "ctx" <labels ctx> "constraints" [...]).
*/}}
{{- define "switchyard.topologySpread" -}}
{{- if .constraints }}
topologySpreadConstraints:
{{- $selector := dict "matchLabels" (include "switchyard.selectorLabels" .ctx | fromYaml) }}
{{- range .constraints }}
  - {{- merge (deepCopy .) (dict "labelSelector" $selector) | toYaml | nindent 4 }}
{{- end }}
{{- end }}
{{- end }}

{{/* A count or a percentage ("25%"): numbers from values arrive as floats. */}}
{{- define "switchyard.intOrString" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}

{{/* http or https: how the planes reach each other's listeners. */}}
{{- define "switchyard.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* Where a plane's TLS Secret (tls.crt, tls.key, ca.crt) is mounted. */}}
{{- define "switchyard.tls.dir" -}}
/etc/switchyard/tls
{{- end }}

{{/* The control plane's probe: gRPC health, or with TLS (which the kubelet's
gRPC probes cannot speak) the gRPC port accepting connections. */}}
{{- define "switchyard.controlPlane.probe" -}}
{{- if .Values.tls.enabled -}}
tcpSocket:
  port: grpc
{{- else -}}
grpc:
  port: {{ int64 .Values.controlPlane.grpcPort }}
{{- end }}
{{- end }}
