{{/*
Names and labels: the `helm create` scaffold helpers (omoai.name, omoai.fullname, omoai.chart,
omoai.labels, omoai.selectorLabels) plus component variants that add app.kubernetes.io/component.
*/}}

{{/*
Expand the name of the chart.
*/}}
{{- define "omoai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "omoai.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "omoai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "omoai.labels" -}}
helm.sh/chart: {{ include "omoai.chart" . }}
{{ include "omoai.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: omoai
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "omoai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "omoai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Component helpers take a dict: (dict "root" $ "component" "asr").
*/}}
{{- define "omoai.componentFullname" -}}
{{- printf "%s-%s" (include "omoai.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "omoai.componentLabels" -}}
{{ include "omoai.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "omoai.componentSelectorLabels" -}}
{{ include "omoai.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of a component's service account to use.
*/}}
{{- define "omoai.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "omoai.componentFullname" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
A component's image reference: [registry/]repository[:tag][@digest].
*/}}
{{- define "omoai.image" -}}
{{- $img := (index .root.Values .component).image }}
{{- $repo := $img.repository }}
{{- with .root.Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- $tag := $img.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString }}
{{- if $img.digest }}
{{- printf "%s:%s@%s" $repo $tag $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/*
An environment variable value as a string: whole numbers stay whole (Helm reads every number in
values as float64, which would otherwise print large ones as 2.147483648e+09).
*/}}
{{- define "omoai.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (floor .) . }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
OMOAI_* variables from a `config` map: key maxQueue -> OMOAI_MAX_QUEUE; empty strings are left out
so that the process keeps its own default.
*/}}
{{- define "omoai.configEnv" -}}
{{- range $key, $value := . }}
{{- if or (kindIs "slice" $value) (kindIs "map" $value) }}
{{- if $value }}
- name: {{ printf "OMOAI_%s" (snakecase $key | upper) }}
  value: {{ toJson $value | quote }}
{{- end }}
{{- else if ne (toString $value) "" }}
- name: {{ printf "OMOAI_%s" (snakecase $key | upper) }}
  value: {{ include "omoai.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Secret holding the bearer token, and the path of the mounted file.
*/}}
{{- define "omoai.tokenSecretName" -}}
{{- default (printf "%s-api-token" (include "omoai.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "omoai.tokenFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.auth.mountPath) .Values.auth.secretKey }}
{{- end }}

{{/*
The shared claims: the chart's own (or existingClaim) first, then extraClaims. Returns JSON (a list).
*/}}
{{- define "omoai.sharedClaimName" -}}
{{- default (printf "%s-shared" (include "omoai.fullname" .)) .Values.sharedStorage.existingClaim }}
{{- end }}

{{- define "omoai.sharedClaims" -}}
{{- $claims := list (include "omoai.sharedClaimName" .) }}
{{- range .Values.sharedStorage.extraClaims }}
{{- if not (has . $claims) }}
{{- $claims = append $claims . }}
{{- end }}
{{- end }}
{{- toJson $claims }}
{{- end }}

{{/*
Volume mounts and volumes of the shared claims: (dict "root" $ "readOnly" bool).
*/}}
{{- define "omoai.sharedMounts" -}}
{{- $root := .root }}
{{- range $i, $claim := include "omoai.sharedClaims" $root | fromJsonArray }}
- name: {{ printf "shared-%d" $i }}
  mountPath: {{ printf "%s/%s" (trimSuffix "/" $root.Values.sharedStorage.mountPath) $claim }}
  readOnly: {{ $.readOnly }}
{{- end }}
{{- end }}

{{- define "omoai.sharedVolumes" -}}
{{- $root := .root }}
{{- range $i, $claim := include "omoai.sharedClaims" $root | fromJsonArray }}
- name: {{ printf "shared-%d" $i }}
  persistentVolumeClaim:
    claimName: {{ $claim }}
    readOnly: {{ $.readOnly }}
{{- end }}
{{- end }}

{{/*
OMOAI_VOLUMES of the operator: {"claim": "/data/claim", ...}.
*/}}
{{- define "omoai.volumesJson" -}}
{{- $root := . }}
{{- $m := dict }}
{{- range include "omoai.sharedClaims" $root | fromJsonArray }}
{{- $_ := set $m . (printf "%s/%s" (trimSuffix "/" $root.Values.sharedStorage.mountPath) .) }}
{{- end }}
{{- toJson $m }}
{{- end }}

{{/*
Service URLs the operator calls.
*/}}
{{- define "omoai.asrUrl" -}}
{{- if .Values.operator.asrUrl }}
{{- .Values.operator.asrUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "omoai.componentFullname" (dict "root" . "component" "asr")) .Release.Namespace .Values.asr.service.port }}
{{- end }}
{{- end }}

{{- define "omoai.llmUrl" -}}
{{- if .Values.operator.llmUrl }}
{{- .Values.operator.llmUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "omoai.componentFullname" (dict "root" . "component" "llm")) .Release.Namespace .Values.llm.service.port }}
{{- end }}
{{- end }}

{{/*
prometheus.io/* scrape annotations.
*/}}
{{- define "omoai.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
