{{/*
Object names are fixed, not derived from the release name: there is one Weft per cluster, its webhook
configurations and ClusterRole are cluster-wide, and proxies dial weft-operator.<namespace>.svc.
*/}}
{{- define "weft.operator.name" -}}weft-operator{{- end -}}
{{- define "weft.webhook.name" -}}weft-webhook{{- end -}}
{{- define "weft.webhook.tlsSecret" -}}weft-webhook-tls{{- end -}}

{{/* Non-empty when the operator serves plaintext xDS on 15010: always without mutual TLS (the only xDS port
then), with it only when asked (mtls.plaintextXds). */}}
{{- define "weft.plaintextXds" -}}
{{- if or (not .Values.mtls.enabled) .Values.mtls.plaintextXds }}true{{ end -}}
{{- end -}}

{{/* Chart name and version, as the helm.sh/chart label wants them. */}}
{{- define "weft.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels selecting one component's pods. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels on every object. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "weft.labels" -}}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: weft
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "weft.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* repository:tag of an image value; the tag defaults to the chart's appVersion. Call with (dict "ctx" $ "image" ...). */}}
{{- define "weft.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Pod securityContext of the operator and webhook: non-root, RuntimeDefault seccomp. */}}
{{- define "weft.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: no privilege escalation, read-only root filesystem, no capabilities. */}}
{{- define "weft.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The affinity value, or by default a preference to spread replicas over nodes. Call with (dict "ctx" $ "component" "operator" "affinity" ...). */}}
{{- define "weft.affinity" -}}
{{- if .affinity -}}
{{ toYaml .affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "weft.selectorLabels" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Namespaces never injected: Kubernetes' own and Weft's. */}}
{{- define "weft.excludedNamespaces" -}}
{{- toJson (uniq (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace)) -}}
{{- end -}}

{{/*
The webhook's TLS material as JSON {"ca.crt", "tls.crt", "tls.key"}, each base64 (Secret data encoding).
On upgrade (the Secret exists) it is the Secret's content, so certificates never rotate behind the API server's
back. On install (or when the Secret was deleted) a new CA and a serving certificate for weft-webhook.<ns>.svc.
Computed once per render and kept in .Values.__weftWebhookTLS, so the Secret, both caBundles and the pods'
checksum annotation agree (each template including it would otherwise generate different keys).
`helm template` cannot look up, so every render there generates new certificates.
*/}}
{{- define "weft.webhookTLS" -}}
{{- if not (hasKey .Values "__weftWebhookTLS") -}}
{{- $name := include "weft.webhook.name" . -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "weft.webhook.tlsSecret" .) -}}
{{- $data := dict -}}
{{- if and $secret $secret.data (index $secret.data "ca.crt") (index $secret.data "tls.crt") (index $secret.data "tls.key") -}}
{{- $data = dict "ca.crt" (index $secret.data "ca.crt") "tls.crt" (index $secret.data "tls.crt") "tls.key" (index $secret.data "tls.key") -}}
{{- else -}}
{{- $days := int .Values.webhook.tls.validityDays -}}
{{- $host := printf "%s.%s.svc" $name .Release.Namespace -}}
{{- $sans := list $name (printf "%s.%s" $name .Release.Namespace) $host (printf "%s.cluster.local" $host) -}}
{{- $ca := genCA "weft-webhook-ca" $days -}}
{{- $cert := genSignedCert $host nil $sans $days $ca -}}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__weftWebhookTLS" $data -}}
{{- end -}}
{{- toJson (index .Values "__weftWebhookTLS") -}}
{{- end -}}

{{/* cert-manager's issuer of the serving certificate. */}}
{{- define "weft.certManager.issuerRef" -}}
{{- with .Values.certManager.issuerRef -}}
name: {{ required "certManager.issuerRef.name is required when issuerRef is set" .name }}
kind: {{ default "Issuer" .kind }}
group: {{ default "cert-manager.io" .group }}
{{- else -}}
name: weft-webhook-selfsigned
kind: Issuer
group: cert-manager.io
{{- end -}}
{{- end -}}
