{{- define "cso.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cso.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cso.labels" -}}
{{ include "cso.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
cluster.x-k8s.io/provider: runtime-extension-clusterstack
{{- end -}}

{{- define "cso.tlsSecret" -}}
{{- .Values.tlsSecretName | default (printf "%s-serving-cert" (include "cso.fullname" .)) -}}
{{- end -}}

{{/* cso.caAnnotation: cert-manager's CA injection; without cert-manager the templates set clientConfig.caBundle instead. */}}
{{- define "cso.caAnnotation" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "cso.fullname" . }}-serving-cert
{{- end }}
{{- end -}}

{{/* cso.metricsPort and cso.metricsPortName: the manager's metrics endpoint, as config/manager serves it (https on 8443) or, with metrics.secure false, plain http on 8080. */}}
{{- define "cso.metricsPort" -}}
{{- if .Values.metrics.secure }}8443{{ else }}8080{{ end -}}
{{- end -}}

{{- define "cso.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http{{ end -}}
{{- end -}}
