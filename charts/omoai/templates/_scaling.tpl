{{- /*
Helpers of the queue-driven scaling (autoscaling.*): the demand query, the per-replica target, and
the operator's discovery settings. See keda.yaml, prometheus-adapter.yaml, operator-discovery-rbac.yaml.
*/ -}}

{{/*
Demand on one service: the operator's queue for it plus the stages it runs there. Both gauges are
exported (at 0) by every operator replica, so the standby replica adds nothing. The ASR service
adds its live sessions (which bypass the queue), asr.config.realtimeSessionsPerSlot to a slot, so
a replica full of live sessions scales out.
Call with (dict "root" . "component" "asr").
*/}}
{{- define "omoai.demandQuery" -}}
{{- $p := .root.Values.autoscaling.prometheus }}
{{- $m := printf "service=%q" .component }}
{{- if $p.operatorSelector }}{{ $m = printf "%s,%s" $m $p.operatorSelector }}{{ end }}
{{- printf "sum(omoai_operator_queue_depth{%s}) + sum(omoai_operator_in_flight{%s})" $m $m }}
{{- if eq .component "asr" }}
{{- $per := .root.Values.asr.config.realtimeSessionsPerSlot | default 1 }}
{{- printf " + (sum(omoai_asr_realtime_sessions_open{%s}) or vector(0)) / %v" ($p.asrSelector | default "") $per }}
{{- end }}
{{- end }}

{{/*
Stages one replica takes at once: autoscaling.<c>.targetPerReplica, else <c>.config.maxConcurrency.
*/}}
{{- define "omoai.scaleTarget" -}}
{{- $s := index .root.Values.autoscaling .component }}
{{- if gt (int $s.targetPerReplica) 0 }}
{{- $s.targetPerReplica }}
{{- else }}
{{- (index .root.Values .component).config.maxConcurrency }}
{{- end }}
{{- end }}

{{/*
"true" when a queue-driven scaler (KEDA or the external-metric HPA) owns the replica count, after
checking that the settings do not contradict each other.
*/}}
{{- define "omoai.scaledByQueue" -}}
{{- $s := index .root.Values.autoscaling .component }}
{{- $v := index .root.Values .component }}
{{- if or $s.keda.enabled $s.hpa.enabled }}
{{- if and $s.keda.enabled $s.hpa.enabled }}
{{- fail (printf "autoscaling.%s: enable keda or hpa, not both (KEDA creates its own HPA)" .component) }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- fail (printf "autoscaling.%s and %s.autoscaling both scale the %s Deployment: enable only one" .component .component .component) }}
{{- end }}
{{- if not .root.Values.autoscaling.endpointDiscovery }}
{{- fail (printf "autoscaling.%s needs autoscaling.endpointDiscovery: without it the operator calls the Service URL with a fixed concurrency and added replicas get no work" .component) }}
{{- end }}
{{- if and $s.keda.enabled (gt (int $s.keda.minReplicaCount) (int $s.keda.maxReplicaCount)) }}
{{- fail (printf "autoscaling.%s.keda.minReplicaCount (%v) is above maxReplicaCount (%v)" .component $s.keda.minReplicaCount $s.keda.maxReplicaCount) }}
{{- end }}
{{- if and $s.hpa.enabled (gt (int $s.hpa.minReplicas) (int $s.hpa.maxReplicas)) }}
{{- fail (printf "autoscaling.%s.hpa.minReplicas (%v) is above maxReplicas (%v)" .component $s.hpa.minReplicas $s.hpa.maxReplicas) }}
{{- end }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
The operator's endpoint-discovery environment (EnvVar list items).
*/}}
{{- define "omoai.discoveryEnv" -}}
- name: OMOAI_ENDPOINT_DISCOVERY
  value: {{ .Values.autoscaling.endpointDiscovery | quote }}
- name: OMOAI_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
