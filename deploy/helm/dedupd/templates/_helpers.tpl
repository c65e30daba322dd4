{{/* Names, labels and shared snippets of the dedupd chart. */}}

{{/* The chart's name, at most 63 characters (a label value's limit). */}}
{{- define "dedupd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name. A release called dedupd (or
dedupd-something) names them as the kustomize overlays do: dedupd,
dedupd-migrate, dedupd-auth. */}}
{{- define "dedupd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "dedupd.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "dedupd.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: never change after install (selectors are
immutable). Call with (dict "root" $ "component" "server"). */}}
{{- define "dedupd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dedupd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels: the selector labels and those that change. */}}
{{- define "dedupd.labels" -}}
{{ include "dedupd.selectorLabels" . }}
app.kubernetes.io/part-of: dedupd
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The image of the server and of the migration: one reference, so the
two never run different releases. A digest, when given, wins. */}}
{{- define "dedupd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding auth.toml. */}}
{{- define "dedupd.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "dedupd.fullname" .)) -}}
{{- end -}}

{{/* The restricted security context of every dedupd container. */}}
{{- define "dedupd.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "dedupd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Egress of every dedupd pod: DNS anywhere, CQL to the database. */}}
{{- define "dedupd.egress" -}}
# DNS to any address: cluster DNS may be CoreDNS pods or a node-local
# cache on a link-local address, which no pod selector matches.
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
# CQL, to the database's pods when networkPolicy.cql.to names them.
- {{- with .Values.networkPolicy.cql.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .Values.networkPolicy.cql.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}
