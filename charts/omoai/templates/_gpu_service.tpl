{{/*
The shape shared by the two GPU services (ASR, LLM): Deployment, Service, ServiceAccount, model
cache claim, HPA, PDB and NetworkPolicy. Each takes (dict "root" $ "component" "asr"|"llm").
*/}}

{{- define "omoai.gpuService.check" -}}
{{- $v := index .root.Values .component }}
{{- $device := toString $v.config.device }}
{{- if and (not $v.gpu.enabled) (hasPrefix "cuda" $device) }}
{{- fail (printf "%s.config.device is %q but %s.gpu.enabled is false: the pod gets no GPU. Set %s.config.device to cpu (or auto), or enable the GPU." .component $device .component .component) }}
{{- end }}
{{- if and $v.gpu.enabled (eq $device "cpu") }}
{{- fail (printf "%s.config.device is cpu but %s.gpu.enabled reserves a GPU it would never use: set %s.gpu.enabled=false or a cuda device." .component .component .component) }}
{{- end }}
{{- if and (eq $v.modelCache.type "pvc") (not $v.modelCache.existingClaim) (gt (int $v.replicaCount) 1) (not (has "ReadWriteMany" $v.modelCache.accessModes)) }}
{{- fail (printf "%s.modelCache: %d replicas cannot share a %v claim; use ReadWriteMany or an emptyDir cache." .component (int $v.replicaCount) $v.modelCache.accessModes) }}
{{- end }}
{{- end }}

{{- define "omoai.gpuService.deployment" -}}
{{- include "omoai.gpuService.check" . }}
{{- $root := .root }}
{{- $c := .component }}
{{- $v := index $root.Values $c }}
{{- $ctx := dict "root" $root "component" $c }}
{{- $fullname := include "omoai.componentFullname" $ctx }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not (or $v.autoscaling.enabled (include "omoai.scaledByQueue" .)) }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "omoai.componentSelectorLabels" $ctx | nindent 6 }}
  strategy:
    {{- toYaml $v.updateStrategy | nindent 4 }}
  template:
    metadata:
      annotations:
        kubectl.kubernetes.io/default-container: {{ $c }}
        {{- include "omoai.scrapeAnnotations" (dict "root" $root "port" $v.port) | trim | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "omoai.componentLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "omoai.serviceAccountName" $ctx }}
      # The services never call the Kubernetes API.
      automountServiceAccountToken: false
      # Service links would inject OMOAI_*-prefixed variables (OMOAI_ASR_PORT=tcp://...) that
      # pydantic-settings could read as settings.
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- $tolerations := $v.tolerations }}
      {{- if $v.gpu.enabled }}
      {{- $tolerations = concat $v.gpu.tolerations $v.tolerations }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $c }}
          image: {{ include "omoai.image" $ctx | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          env:
            - name: OMOAI_HOST
              value: "0.0.0.0"
            - name: OMOAI_PORT
              value: {{ $v.port | quote }}
            - name: OMOAI_LOG_LEVEL
              value: {{ $root.Values.logging.level | quote }}
            - name: OMOAI_LOG_FORMAT
              value: {{ $root.Values.logging.format | quote }}
            - name: OMOAI_DEBUG_EMPTY_CACHE
              value: {{ $root.Values.debugEmptyCache | quote }}
            {{- if $root.Values.auth.enabled }}
            - name: OMOAI_API_TOKEN_FILE
              value: {{ include "omoai.tokenFile" $root | quote }}
            {{- end }}
            {{- if and (eq $c "asr") $root.Values.sharedStorage.enabled }}
            - name: OMOAI_FILE_ROOT
              value: {{ $root.Values.sharedStorage.mountPath | quote }}
            {{- end }}
            {{- if and (eq $c "llm") (dig "openaiApiKeySecret" "name" "" $v) }}
            - name: OMOAI_OPENAI_API_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ $v.openaiApiKeySecret.name }}
                  key: {{ $v.openaiApiKeySecret.key }}
            {{- end }}
            {{- include "omoai.configEnv" $v.config | trim | nindent 12 }}
            # The root filesystem is read-only: caches go to the model volume and /tmp.
            - name: HF_HOME
              value: {{ printf "%s/huggingface" (trimSuffix "/" $v.modelCache.mountPath) | quote }}
            - name: HOME
              value: /tmp
            - name: XDG_CACHE_HOME
              value: /tmp/.cache
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # The model loads before the server answers: the startup probe allows for it, then
          # readiness gates traffic on /readyz and liveness restarts a wedged process.
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
            timeoutSeconds: 5
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
          {{- $resources := deepCopy $v.resources }}
          {{- if $v.gpu.enabled }}
          {{- $limits := get $resources "limits" | default dict }}
          {{- $_ := set $limits $v.gpu.resourceName (int $v.gpu.count) }}
          {{- $_ := set $resources "limits" $limits }}
          {{- end }}
          resources:
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: shm
              mountPath: /dev/shm
            - name: model-cache
              mountPath: {{ $v.modelCache.mountPath }}
            {{- if $root.Values.auth.enabled }}
            - name: api-token
              mountPath: {{ $root.Values.auth.mountPath }}
              readOnly: true
            {{- end }}
            {{- if and (eq $c "asr") $root.Values.sharedStorage.enabled }}
            {{- include "omoai.sharedMounts" (dict "root" $root "readOnly" true) | trim | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 2Gi
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: {{ $v.shmSize }}
        - name: model-cache
          {{- if eq $v.modelCache.type "pvc" }}
          persistentVolumeClaim:
            claimName: {{ $v.modelCache.existingClaim | default (printf "%s-model-cache" $fullname) }}
          {{- else }}
          emptyDir:
            sizeLimit: {{ $v.modelCache.sizeLimit }}
          {{- end }}
        {{- if $root.Values.auth.enabled }}
        - name: api-token
          secret:
            secretName: {{ include "omoai.tokenSecretName" $root }}
            defaultMode: 0440
            items:
              - key: {{ $root.Values.auth.secretKey }}
                path: {{ $root.Values.auth.secretKey }}
        {{- end }}
        {{- if and (eq $c "asr") $root.Values.sharedStorage.enabled }}
        {{- include "omoai.sharedVolumes" (dict "root" $root "readOnly" true) | trim | nindent 8 }}
        {{- end }}
{{- end }}

{{- define "omoai.gpuService.service" -}}
{{- $v := index .root.Values .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "omoai.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "omoai.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "omoai.gpuService.serviceAccount" -}}
{{- $v := index .root.Values .component }}
{{- if $v.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "omoai.serviceAccountName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
  {{- with $v.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end }}

{{- define "omoai.gpuService.modelCacheClaim" -}}
{{- $v := index .root.Values .component }}
{{- if and (eq $v.modelCache.type "pvc") (not $v.modelCache.existingClaim) }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ printf "%s-model-cache" (include "omoai.componentFullname" .) }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
spec:
  accessModes:
    {{- toYaml $v.modelCache.accessModes | nindent 4 }}
  {{- with $v.modelCache.storageClassName }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $v.modelCache.size }}
{{- end }}
{{- end }}

{{- define "omoai.gpuService.hpa" -}}
{{- $v := index .root.Values .component }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" .component $v.autoscaling.minReplicas $v.autoscaling.maxReplicas) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "omoai.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "omoai.componentFullname" . }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- if $v.autoscaling.metrics }}
    {{- toYaml $v.autoscaling.metrics | nindent 4 }}
    {{- else }}
    - type: Pods
      pods:
        metric:
          name: {{ printf "omoai_%s_queue_depth" .component }}
        target:
          type: AverageValue
          averageValue: {{ $v.autoscaling.targetQueueDepth | quote }}
    {{- end }}
  behavior:
    # A GPU pod takes minutes to load its model: scale up at once, scale down slowly.
    scaleUp:
      stabilizationWindowSeconds: 0
    scaleDown:
      stabilizationWindowSeconds: 600
{{- end }}
{{- end }}

{{- define "omoai.gpuService.pdb" -}}
{{- $v := index .root.Values .component }}
{{- if $v.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "omoai.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "omoai.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "omoai.gpuService.networkPolicy" -}}
{{- $root := .root }}
{{- $v := index $root.Values .component }}
{{- if $v.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "omoai.componentFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "omoai.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "omoai.componentSelectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports:
        - port: http
          protocol: TCP
      from:
        # The operator of this release.
        - podSelector:
            matchLabels:
              {{- include "omoai.componentSelectorLabels" (dict "root" $root "component" "operator") | nindent 14 }}
        {{- with $root.Values.metrics.scrapeFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.networkPolicy.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}
{{- end }}
