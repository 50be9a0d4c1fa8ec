{{/*
Expand the name of the chart.
*/}}
{{- define "cloudfree.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "cloudfree.fullname" -}}
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
{{- define "cloudfree.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "cloudfree.labels" -}}
helm.sh/chart: {{ include "cloudfree.chart" . }}
{{ include "cloudfree.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloudfree
{{- end }}

{{/*
Selector labels
*/}}
{{- define "cloudfree.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudfree.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Names of the chart's objects, each within 63 characters.
*/}}
{{- define "cloudfree.componentName" -}}
{{- printf "%s-%s" (include "cloudfree.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}
{{- define "cloudfree.settingsName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "settings") }}
{{- end }}
{{- define "cloudfree.jobTemplateName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "job-template") }}
{{- end }}
{{- define "cloudfree.workerName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "prefect-worker") }}
{{- end }}
{{- define "cloudfree.flowRunName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "flow-run") }}
{{- end }}
{{- define "cloudfree.stacApiName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "stac-api") }}
{{- end }}
{{- define "cloudfree.stacWriterName" -}}
{{- include "cloudfree.componentName" (dict "root" . "component" "stac-writer") }}
{{- end }}

{{/*
Images.
*/}}
{{- define "cloudfree.cpuImage" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.cpuTag }}
{{- end }}
{{- define "cloudfree.gpuImage" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.gpuTag }}
{{- end }}
{{- define "cloudfree.stacApiImage" -}}
{{- $i := .Values.stacApi.image }}
{{- if $i.registry }}{{ printf "%s/%s:%s" $i.registry $i.repository $i.tag }}{{ else }}{{ printf "%s:%s" $i.repository $i.tag }}{{ end }}
{{- end }}

{{/*
The STAC API URL the pods use: the configured one, else the chart's own.
*/}}
{{- define "cloudfree.stacApiUrl" -}}
{{- if .Values.settings.stacApiUrl }}
{{- .Values.settings.stacApiUrl }}
{{- else if .Values.stacApi.enabled }}
{{- printf "http://%s:%d" (include "cloudfree.stacApiName" .) (int .Values.stacApi.port) }}
{{- else }}
{{- fail "set settings.stacApiUrl, or stacApi.enabled=true to deploy the output STAC API" }}
{{- end }}
{{- end }}

{{/*
The STAC API the flows publish to: the configured one, else the chart's writer API, else the
readers' URL (an external API, whose write authentication is its own).
*/}}
{{- define "cloudfree.stacWriteUrl" -}}
{{- if .Values.settings.stacWriteUrl }}
{{- .Values.settings.stacWriteUrl }}
{{- else if .Values.stacApi.enabled }}
{{- printf "http://%s:%d" (include "cloudfree.stacWriterName" .) (int .Values.stacApi.port) }}
{{- else }}
{{- include "cloudfree.stacApiUrl" . }}
{{- end }}
{{- end }}

{{/*
Restricted pod security (Pod Security Standards "restricted"): UID 1000 is the images' user.
*/}}
{{- define "cloudfree.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "cloudfree.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
A Dask worker group's `worker` spec; mirrors cloudfree.cluster.build_worker_spec.
Arguments: root (the chart context), group (values of the group), image, replicas.
*/}}
{{- define "cloudfree.daskWorkerSpec" -}}
{{- $root := .root }}
{{- $g := .group }}
replicas: {{ .replicas }}
metadata:
  labels:
    cloudfree.io/worker-group: {{ .name }}
spec:
  automountServiceAccountToken: false
  securityContext:
    {{- include "cloudfree.podSecurityContext" $root | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and (gt (int ($g.gpus | default 0)) 0) $g.nodeSelector }}
  nodeSelector:
    {{- toYaml $g.nodeSelector | nindent 4 }}
  {{- end }}
  {{- if and (gt (int ($g.gpus | default 0)) 0) $g.tolerations }}
  tolerations:
    {{- toYaml $g.tolerations | nindent 4 }}
  {{- end }}
  containers:
    - name: worker
      image: {{ .image }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - dask
        - worker
        - --name
        - $(DASK_WORKER_NAME)
        - --nthreads
        - {{ $g.threads | quote }}
        - --dashboard
        - --dashboard-address
        - "8788"
        - --local-directory
        - /tmp/dask-worker
        {{- if gt (int ($g.gpus | default 0)) 0 }}
        - --resources
        - {{ printf "GPU=%d" (int $g.gpus) | quote }}
        {{- end }}
      {{- include "cloudfree.daskEnv" $root | nindent 6 }}
      resources:
        requests:
          cpu: {{ $g.cpu | quote }}
          memory: {{ $g.memory | quote }}
        limits:
          memory: {{ $g.memory | quote }}
          {{- if gt (int ($g.gpus | default 0)) 0 }}
          nvidia.com/gpu: {{ $g.gpus | toString | quote }}
          {{- end }}
      securityContext:
        {{- include "cloudfree.containerSecurityContext" $root | nindent 8 }}
      ports:
        - name: http-dashboard
          containerPort: 8788
          protocol: TCP
      volumeMounts:
        - name: scratch
          mountPath: /tmp
  volumes:
    - name: scratch
      emptyDir:
        sizeLimit: 20Gi
{{- end }}

{{/*
Settings and S3 keys of the Dask containers; mirrors cloudfree.cluster.settings_env.
*/}}
{{- define "cloudfree.daskEnv" -}}
env:
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ .Values.s3.existingSecret }}
        key: CLOUDFREE_S3_ACCESS_KEY_ID
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .Values.s3.existingSecret }}
        key: CLOUDFREE_S3_SECRET_ACCESS_KEY
envFrom:
  - configMapRef:
      name: {{ include "cloudfree.settingsName" . }}
  - secretRef:
      name: {{ .Values.s3.existingSecret }}
{{- end }}

{{/*
Adaptive bounds must be ordered; JSON schema cannot compare two values.
*/}}
{{- define "cloudfree.checkBounds" -}}
{{- range $name, $g := dict "loaders" .Values.dask.loaders "gpu" .Values.dask.gpu }}
{{- if gt (int $g.minimum) (int $g.maximum) }}
{{- fail (printf "dask.%s.minimum (%d) must not exceed dask.%s.maximum (%d)" $name (int $g.minimum) $name (int $g.maximum)) }}
{{- end }}
{{- end }}
{{- end }}
