{{- define "mamori.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mamori.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mamori.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mamori.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mamori.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mamori.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mamori.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mamori.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mamori.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mamori.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mamori.secretEnv" -}}
{{- $s := .Values.secrets -}}
{{- if $s.existingSecret }}
{{- range $env, $key := dict "MAMORI_HASH_KEY" $s.hashKeyKey "MAMORI_API__KEYS" $s.apiKeysKey "MAMORI_API__JWT_SECRET" $s.jwtSecretKey "MAMORI_SMPP__ACCOUNTS" $s.smppAccountsKey }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef: {name: {{ $s.existingSecret | quote }}, key: {{ $key | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.kafka.saslPasswordSecret }}
{{- if .name }}
- name: MAMORI_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- with .Values.postgresql.urlSecret }}
{{- if .name }}
- name: MAMORI_STORE__URL
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- end -}}
