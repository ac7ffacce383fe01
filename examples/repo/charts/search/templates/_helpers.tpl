{{- define "search.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Chart.Name }}-{{ .Values.environment }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: backend
app.kubernetes.io/part-of: {{ .Values.partOf }}
app.kubernetes.io/managed-by: flux
{{- end }}

{{- define "search.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Chart.Name }}-{{ .Values.environment }}
{{- end }}
