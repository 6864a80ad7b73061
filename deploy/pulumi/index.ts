// thoth-gateway with Pulumi: the same as deploy/terraform — the Helm chart in
// ../helm/thoth-gateway for one rollout stage, its Secret built from files, non-secret outputs.
//
//   pulumi config set stage canary
//   pulumi config set configFile ../../config/gateway.toml
//   pulumi config set --path 'secretFiles.hec-token' secrets/hec-token   (a path, not the secret)
//   pulumi up
import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

const cfg = new pulumi.Config();
const stage = cfg.get("stage") ?? "full";
if (!["canary", "pilot", "full"].includes(stage)) {
  throw new Error(`stage must be canary, pilot or full, not ${stage}`);
}
const namespaceName = cfg.get("namespace") ?? "thoth";
const chartPath = path.join(__dirname, "..", "helm", "thoth-gateway");
const gatewayConfig = fs.readFileSync(cfg.require("configFile"), "utf8");
// Secret name → file path. Files keep the secret values out of the stack's config.
const secretFiles = cfg.getObject<Record<string, string>>("secretFiles") ?? {};

const namespace = new k8s.core.v1.Namespace("thoth", {
  metadata: { name: namespaceName },
});

const secret = new k8s.core.v1.Secret("thoth-gateway-secrets", {
  metadata: { name: "thoth-gateway-secrets", namespace: namespace.metadata.name },
  stringData: pulumi.secret(
    Object.fromEntries(
      Object.entries(secretFiles).map(([name, file]) => [name, fs.readFileSync(file, "utf8")]),
    ),
  ),
});

const release = new k8s.helm.v3.Release("thoth-gateway", {
  name: "thoth-gateway",
  namespace: namespace.metadata.name,
  chart: chartPath,
  valueYamlFiles: [new pulumi.asset.FileAsset(path.join(chartPath, "stages", `${stage}.yaml`))],
  values: {
    config: gatewayConfig,
    image: { tag: cfg.get("imageTag") ?? "" },
    secrets: { existingSecret: secret.metadata.name },
    persistence: { size: cfg.get("walVolumeSize") ?? "20Gi" },
  },
  // Waits for the pods and the post-install `thoth-gateway verify` job; a failure rolls back.
  atomic: true,
  waitForJobs: true,
  timeout: 600,
});

export const releaseNamespace = release.namespace;
export const releaseName = release.name;
export const ingestUrl = pulumi.interpolate`http://${release.name}.${release.namespace}.svc:8686`;
export const secretName = secret.metadata.name;
