{{/* The image of this release: repository:tag, the tag defaulting to appVersion. */}}
{{- define "meshfleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
