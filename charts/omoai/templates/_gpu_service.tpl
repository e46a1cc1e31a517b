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
{{- $max := include "omoai.maxReplicas" . | int }}
{{- $cache := $v.modelCache }}
{{- $sharedCache := or (has "ReadWriteMany" $cache.accessModes) (has "ReadOnlyMany" $cache.accessModes) }}
{{- if and (eq $cache.type "pvc") (not $cache.existingClaim) (not $sharedCache) }}
{{- if gt $max 1 }}
{{- fail (printf "%s.modelCache: up to %d replicas (%s) cannot share a %v claim: each pod would wait for the volume forever. Use accessModes [ReadWriteMany] (a storage class that supports it), modelCache.type=emptyDir, or at most one replica." .component $max (include "omoai.maxReplicasSource" .) $cache.accessModes) }}
{{- end }}
{{- $surge := toString (dig "rollingUpdate" "maxSurge" 0 $v.updateStrategy) }}
{{- if and (eq (toString $v.updateStrategy.type) "RollingUpdate") (not (has $surge (list "0" "0%"))) }}
{{- fail (printf "%s.updateStrategy.rollingUpdate.maxSurge is %s but the model cache is a %v claim: the surge pod cannot mount it while the old pod runs. Keep maxSurge 0, or use a ReadWriteMany cache." .component $surge $cache.accessModes) }}
{{- end }}
{{- end }}
{{- if and $cache.preDownload.enabled (ne $cache.type "pvc") }}
{{- fail (printf "%s.modelCache.preDownload needs modelCache.type=pvc: an emptyDir cache belongs to one pod and cannot be filled by a Job." .component) }}
{{- end }}
{{- if and $cache.preDownload.enabled (hasPrefix "/" (toString $v.config.model)) }}
{{- fail (printf "%s.modelCache.preDownload downloads hub models, but %s.config.model is the local path %s." .component .component $v.config.model) }}
{{- end }}
{{- $drain := sub (int $v.terminationGracePeriodSeconds) (int $v.preStopDelaySeconds) }}
{{- if lt $drain 10 }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed preStopDelaySeconds (%d) by at least 10 s: the server needs time to finish its in-flight requests after the preStop delay." .component (int $v.terminationGracePeriodSeconds) (int $v.preStopDelaySeconds)) }}
{{- end }}
{{- if eq .component "llm" }}
{{- $c := $v.config }}
{{- if and $v.gpu.enabled (gt (int $c.tensorParallelSize) (int $v.gpu.count)) }}
{{- fail (printf "llm.config.tensorParallelSize (%d) is above llm.gpu.count (%d): vLLM splits the model over more GPUs than the pod gets. Raise llm.gpu.count or lower tensorParallelSize." (int $c.tensorParallelSize) (int $v.gpu.count)) }}
{{- end }}
{{- if and (gt (int $c.tensorParallelSize) 1) (ne $c.backend "vllm") }}
{{- fail (printf "llm.config.tensorParallelSize is %d but the %s backend does not split models over GPUs (only vllm does)." (int $c.tensorParallelSize) $c.backend) }}
{{- end }}
{{- if and (not $c.model) (not $c.taggerModel) }}
{{- fail "llm.config.model and llm.config.taggerModel are both empty: set the LLM (a hub id or a directory), or a tagger for a tagger-only service." }}
{{- end }}
{{- if and (eq (toString $c.punctuationMethod) "tagger") (not $c.taggerModel) }}
{{- fail "llm.config.punctuationMethod is tagger but llm.config.taggerModel is empty: name the tagger (e.g. dragonSwing/vibert-capu)." }}
{{- end }}
{{- if and (eq $c.backend "vllm") (not $v.gpu.enabled) $c.model }}
{{- fail "llm.config.backend is vllm but llm.gpu.enabled is false: vLLM needs a GPU. Use the transformers backend on CPU, or enable the GPU." }}
{{- end }}
{{- if and (eq $c.backend "openai") (not $c.openaiBaseUrl) }}
{{- fail "llm.config.backend is openai but llm.config.openaiBaseUrl is empty: set the upstream server's URL (ending in /v1)." }}
{{- end }}
{{- if and (eq $c.backend "openai") $v.gpu.enabled }}
{{- fail "llm.config.backend is openai (an upstream server does the work) but llm.gpu.enabled reserves a GPU it would never use: set llm.gpu.enabled=false." }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The most pods a GPU service can have at once: replicaCount, the per-pod HPA's maxReplicas
(<svc>.autoscaling), and the demand-based scalers under the top-level autoscaling.<svc> (a KEDA
ScaledObject's maxReplicaCount, an HPA's maxReplicas) where those values exist and are enabled.
*/}}
{{- define "omoai.maxReplicas" -}}
{{- $v := index .root.Values .component }}
{{- $max := int $v.replicaCount }}
{{- $a := $v.autoscaling | default dict }}
{{- if $a.enabled }}
{{- $max = max $max (int $a.maxReplicas) }}
{{- end }}
{{- $scale := dig .component (dict) (.root.Values.autoscaling | default dict) }}
{{- if kindIs "map" $scale }}
{{- $keda := get $scale "keda" | default dict }}
{{- if and (kindIs "map" $keda) $keda.enabled }}
{{- $max = max $max (int (default 1 $keda.maxReplicaCount)) }}
{{- end }}
{{- $hpa := get $scale "hpa" | default dict }}
{{- if and (kindIs "map" $hpa) $hpa.enabled }}
{{- $max = max $max (int (default 1 $hpa.maxReplicas)) }}
{{- end }}
{{- end }}
{{- $max }}
{{- end }}

{{- define "omoai.maxReplicasSource" -}}
{{- $v := index .root.Values .component }}
{{- if gt (int (include "omoai.maxReplicas" .)) (int $v.replicaCount) }}
{{- printf "%s autoscaling maximum" .component }}
{{- else }}
{{- printf "%s.replicaCount" .component }}
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
      {{- with $v.runtimeClassName }}
      runtimeClassName: {{ . }}
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
            # After SIGTERM the server answers new requests 503 (Retry-After) and finishes the
            # in-flight ones for up to this long: the grace period minus the preStop delay and a margin.
            - name: OMOAI_SHUTDOWN_TIMEOUT_S
              value: {{ include "omoai.shutdownTimeout" $v | quote }}
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
            {{- with $v.hfTokenSecret.name }}
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: {{ $v.hfTokenSecret.key }}
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
          # /healthz answers while the model loads in the background; /readyz only once it is loaded
          # and warmed up. The startup probe waits on /readyz, so a hung download or load restarts
          # the pod; then readiness gates traffic and liveness restarts a wedged process.
          startupProbe:
            httpGet:
              path: /readyz
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
          # Endpoints and load balancers drop a terminating pod asynchronously: keep serving for a
          # moment before the server is told to stop.
          {{- if gt (int $v.preStopDelaySeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: [sleep, {{ $v.preStopDelaySeconds | quote }}]
          {{- end }}
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
        {{- if $root.Values.tests.enabled }}
        # The `helm test` pods of this release.
        - podSelector:
            matchLabels:
              {{- include "omoai.componentSelectorLabels" (dict "root" $root "component" "helm-test") | nindent 14 }}
        {{- end }}
        {{- with $root.Values.metrics.scrapeFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.networkPolicy.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}
{{- end }}

{{/*
OMOAI_SHUTDOWN_TIMEOUT_S of a GPU service: terminationGracePeriodSeconds minus the preStop delay
minus 5 s, so the server stops waiting for requests before the kubelet kills the container.
*/}}
{{- define "omoai.shutdownTimeout" -}}
{{- max 1 (sub (sub (int .terminationGracePeriodSeconds) (int .preStopDelaySeconds)) 5) }}
{{- end }}

{{- define "omoai.gpuService.preDownloadJob" -}}
{{- $root := .root }}
{{- $v := index $root.Values .component }}
{{- $cache := $v.modelCache }}
{{- if and $cache.preDownload.enabled (eq $cache.type "pvc") }}
{{- $models := list }}
{{- with $v.config.model }}
{{- $models = append $models . }}
{{- end }}
{{- with (dig "summaryModel" "" $v.config) }}
{{- $models = append $models . }}
{{- end }}
{{- with (dig "taggerModel" "" $v.config) }}
{{- $models = append $models . }}
{{- end }}
{{- /* Named after the models: a new model is a new Job (a Job's pod template is immutable). */}}
{{- $suffix := toJson $models | sha256sum | trunc 8 }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ printf "%s-model-download-%s" (include "omoai.componentFullname" . | trunc 40 | trimSuffix "-") $suffix }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "omoai.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ printf "%s-model-download" .component }}
spec:
  backoffLimit: {{ $cache.preDownload.backoffLimit }}
  activeDeadlineSeconds: {{ $cache.preDownload.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "omoai.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ printf "%s-model-download" .component }}
    spec:
      restartPolicy: OnFailure
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: download
          image: {{ include "omoai.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # huggingface_hub resumes partial downloads and skips files already in the cache.
          command: [python, -c]
          args:
            - |
              import json, os
              from huggingface_hub import snapshot_download
              for model in json.loads(os.environ["OMOAI_DOWNLOAD_MODELS"]):
                  print("downloading", model, "into", os.environ["HF_HOME"], flush=True)
                  snapshot_download(model)
          env:
            - name: OMOAI_DOWNLOAD_MODELS
              value: {{ toJson $models | quote }}
            - name: HF_HOME
              value: {{ printf "%s/huggingface" (trimSuffix "/" $cache.mountPath) | quote }}
            - name: HOME
              value: /tmp
            {{- with $v.hfTokenSecret.name }}
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: {{ $v.hfTokenSecret.key }}
            {{- end }}
          resources:
            requests:
              cpu: 500m
              memory: 1Gi
            limits:
              memory: 2Gi
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: model-cache
              mountPath: {{ $cache.mountPath }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 1Gi
        - name: model-cache
          persistentVolumeClaim:
            claimName: {{ $cache.existingClaim | default (printf "%s-model-cache" (include "omoai.componentFullname" .)) }}
{{- end }}
{{- end }}
