{{- /*
  Certificate template for the GitLab CI OIDC provisioner (id_tokens).
  Only projects in the group my-group (and its subgroups) get a
  certificate. Replace my-group.
*/ -}}
{{- if not (or (eq .Token.namespace_path "my-group") (hasPrefix "my-group/" .Token.namespace_path)) }}
  {{- fail "only pipelines of my-group may enrol" }}
{{- end }}
{
  "subject": {"commonName": {{ toJson .Token.project_path }}},
  "sans": {{ toJson .SANs }},
  "keyUsage": ["digitalSignature"],
  "extKeyUsage": ["clientAuth"]
}
