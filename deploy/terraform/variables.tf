variable "namespace" {
  description = "Namespace of the release (created when missing)."
  type        = string
  default     = "thoth"
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "thoth-gateway"
}

variable "chart_path" {
  description = "Path to the chart (deploy/helm/thoth-gateway in this repository)."
  type        = string
  default     = "../helm/thoth-gateway"
}

variable "stage" {
  description = "Rollout stage: canary, pilot or full (selects stages/<stage>.yaml)."
  type        = string
  default     = "full"
  validation {
    condition     = contains(["canary", "pilot", "full"], var.stage)
    error_message = "stage must be canary, pilot or full."
  }
}

variable "image_tag" {
  description = "Image tag; empty means the chart's appVersion."
  type        = string
  default     = ""
}

variable "config_file" {
  description = "Path to the gateway config (TOML) to deploy; validate it in CI first (`thoth-gateway validate`)."
  type        = string
}

variable "secret_files" {
  description = "Secret name → path of a file holding it (e.g. hec-token = \"secrets/hec-token\"). Each becomes /etc/thoth/secrets/<name> in the pod. Files keep secrets out of variables, plans and state diffs of the config."
  type        = map(string)
  default     = {}
}

variable "wal_volume_size" {
  description = "Size of each pod's WAL volume; keep above wal.max_bytes."
  type        = string
  default     = "20Gi"
}
