{{- /*
  Certificate template for the GitHub Actions OIDC provisioner.
  Every GitHub repository can mint an ID token with any audience, so the
  provisioner alone would certify all of GitHub: this template refuses
  tokens from outside the organisation. Replace my-org.
*/ -}}
{{- if ne .Token.repository_owner "my-org" }}
  {{- fail "only workflows of my-org may enrol" }}
{{- end }}
{
  "subject": {"commonName": {{ toJson .Token.repository }}},
  "sans": {{ toJson .SANs }},
  "keyUsage": ["digitalSignature"],
  "extKeyUsage": ["clientAuth"]
}
