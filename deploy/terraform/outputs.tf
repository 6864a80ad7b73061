output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.thoth.namespace
}

output "release" {
  description = "Helm release name and revision."
  value       = { name = helm_release.thoth.name, revision = helm_release.thoth.metadata[0].revision }
}

output "ingest_url" {
  description = "In-cluster URL of the ingest API (POST /v1/events)."
  value       = "http://${var.release_name}.${helm_release.thoth.namespace}.svc:8686"
}

output "secret_name" {
  description = "Name of the Secret holding the mounted secret files (not their content)."
  value       = kubernetes_secret_v1.thoth.metadata[0].name
}
