# Installs deploy/helm/thoth-gateway the way Thoth's own control plane is rolled out from CI:
# `terraform apply -var stage=canary`, then pilot, then full, each gated on
# `thoth-gateway verify` (the chart's post-install hook; `wait_for_jobs` makes it blocking).

resource "kubernetes_namespace_v1" "thoth" {
  metadata {
    name = var.namespace
  }
}

# Secrets come from files on the CI runner (or a secrets manager writing them), never from
# variables typed into a plan.
resource "kubernetes_secret_v1" "thoth" {
  metadata {
    name      = "${var.release_name}-secrets"
    namespace = kubernetes_namespace_v1.thoth.metadata[0].name
  }
  data = { for name, path in var.secret_files : name => file(path) }
}

resource "helm_release" "thoth" {
  name          = var.release_name
  namespace     = kubernetes_namespace_v1.thoth.metadata[0].name
  chart         = var.chart_path
  wait          = true
  wait_for_jobs = true
  atomic        = true # a failed verify rolls the release back
  timeout       = 600

  values = [
    file("${var.chart_path}/stages/${var.stage}.yaml"),
    yamlencode({
      config = file(var.config_file)
      image  = { tag = var.image_tag }
      secrets = {
        existingSecret = kubernetes_secret_v1.thoth.metadata[0].name
      }
      persistence = { size = var.wal_volume_size }
    }),
  ]
}
