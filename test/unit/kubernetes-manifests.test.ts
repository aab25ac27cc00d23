/**
 * deploy/kubernetes: the base, the node-local overlay and the base with each component, rendered
 * by the real `kubectl kustomize`, every object validated against the Kubernetes OpenAPI schemas
 * (kubernetes-models), and the wiring that no schema sees checked: the probes hit the admin
 * listener config.yaml sets, the container port is `listen`, every volumeMount has a volume, the
 * shipped config.yaml loads, and the node-local init container's command runs as written.
 */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonSet, Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { run as containerdHosts } from "../../src/commands/containerd-hosts.js";
import { loadConfig } from "../../src/config/load.js";

const KUBECTL = "/usr/bin/kubectl";
const ROOT = "deploy/kubernetes";

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML, checked field by field below
  spec?: any;
  data?: Record<string, string>;
}

// Each kind the manifests use, with its schema-validating model.
const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "apps/v1/DaemonSet": DaemonSet,
  "apps/v1/StatefulSet": StatefulSet,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

/** `kubectl kustomize DIR`, parsed; a kustomize error fails with kubectl's own message. */
function render(dir: string): K8sObject[] {
  const r = spawnSync(KUBECTL, ["kustomize", dir], { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => {
    if (d.errors.length > 0) throw new Error(`${dir}: ${d.errors[0]?.message}`);
    return d.toJS() as K8sObject;
  });
}

/** A kustomization that is the base plus the named components, in a temp dir beside nothing. */
async function baseWith(...components: string[]): Promise<string> {
  const dir = await mkdtemp(join(process.cwd(), `${ROOT}/.test-`));
  const rel = (p: string) => join("..", p.replace(`${ROOT}/`, ""));
  await writeFile(
    join(dir, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      `resources: [${rel(`${ROOT}/base`)}]`,
      `components: [${components.map((c) => rel(`${ROOT}/components/${c}`)).join(", ")}]`,
      "",
    ].join("\n"),
  );
  return dir;
}

/** ServiceMonitor is a Prometheus Operator CRD, not in kubernetes-models: its fields by hand. */
function validateServiceMonitor(o: K8sObject, service: K8sObject | undefined) {
  expect(Object.keys(o.spec).sort()).toEqual(["endpoints", "selector"]);
  expect(o.spec.selector.matchLabels).toBeTypeOf("object");
  for (const [k, v] of Object.entries(o.spec.selector.matchLabels as Record<string, string>))
    expect(service?.metadata.labels?.[k], `Service label ${k}`).toBe(v);
  for (const e of o.spec.endpoints as Record<string, unknown>[]) {
    for (const k of Object.keys(e)) expect(["port", "path", "interval", "scheme"]).toContain(k);
    expect(service?.spec.ports.map((p: { name: string }) => p.name)).toContain(e.port);
    expect(e.path).toBe("/metrics");
    expect(e.interval).toMatch(/^\d+[smh]$/);
  }
}

function validateAll(objects: K8sObject[]) {
  expect(objects.length).toBeGreaterThan(0);
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    if (key === "monitoring.coreos.com/v1/ServiceMonitor") {
      validateServiceMonitor(
        o,
        objects.find((s) => s.kind === "Service"),
      );
      continue;
    }
    const Model = MODELS[key];
    expect(Model, `a schema for ${key}`).toBeDefined();
    expect(
      () => new (Model as NonNullable<typeof Model>)(o as never).validate(),
      `${key} ${o.metadata.name}`,
    ).not.toThrow();
  }
}

function port(hostPort: string): number {
  return Number(hostPort.slice(hostPort.lastIndexOf(":") + 1));
}

/** The pod wiring: probes on admin.listen, container port = listen, every mount has a volume. */
async function checkWorkload(objects: K8sObject[], kind: "Deployment" | "DaemonSet" | "StatefulSet") {
  const workloads = objects.filter((o) => o.kind === kind);
  expect(workloads).toHaveLength(1);
  const workload = workloads[0] as K8sObject;
  const pod = workload.spec.template.spec;
  // A StatefulSet's claim templates are volumes of its pods too.
  const claims = (workload.spec.volumeClaimTemplates ?? []).map((c: K8sObject) => c.metadata.name);
  const volumes = new Set([...pod.volumes.map((v: { name: string }) => v.name), ...claims]);
  const configVolume = pod.volumes.find((v: { name: string }) => v.name === "config").configMap.name;
  const configMap = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === configVolume);
  const configText = configMap?.data?.["config.yaml"];
  expect(configText, `config.yaml in ConfigMap ${configVolume}`).toBeTypeOf("string");

  // The shipped config.yaml loads as trustgate would load it (unknown keys are errors there).
  const dir = await mkdtemp(join(tmpdir(), "trustgate-k8s-"));
  await mkdir(join(dir, "policies"));
  await writeFile(join(dir, "config.yaml"), configText as string);
  const config = await loadConfig(join(dir, "config.yaml"), {});
  expect(config.admin).toBeDefined();
  const adminPort = config.admin?.listen.port;
  expect(adminPort).toBe(port((configText as string).match(/^\s+listen: (\S+)/m)?.[1] as string));

  expect(pod.securityContext.runAsNonRoot).toBe(true);
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    for (const m of c.volumeMounts ?? []) expect(volumes, `${c.name}: volume ${m.name}`).toContain(m.name);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.resources.requests).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
  }
  const main = pod.containers.find((c: { name: string }) => c.name === "trustgate");
  expect(main.readinessProbe.httpGet).toMatchObject({ path: "/readyz", port: adminPort });
  expect(main.livenessProbe.httpGet).toMatchObject({ path: "/healthz", port: adminPort });
  expect(main.ports.find((p: { name: string }) => p.name === "oci").containerPort).toBe(config.listen.port);
  expect(main.ports.find((p: { name: string }) => p.name === "admin").containerPort).toBe(adminPort);
  const stateMount = main.volumeMounts.find((m: { mountPath: string }) => m.mountPath === config.stateDir);
  expect(stateMount, `a volume at stateDir ${config.stateDir}`).toBeDefined();
  // policies resolve beside config.yaml: /etc/trustgate/policies in the pod.
  expect(config.policies).toBe(join(dir, "policies"));
  expect(main.volumeMounts.map((m: { mountPath: string }) => m.mountPath)).toContain(
    "/etc/trustgate/policies",
  );
  // passwordEnv's variable comes from the Secret, never a literal value.
  const token = main.env.find((e: { name: string }) => e.name === "DOCKERHUB_TOKEN");
  expect(token.valueFrom.secretKeyRef).toMatchObject({ name: "trustgate-upstream", key: "DOCKERHUB_TOKEN" });
  return {
    workload,
    pod,
    config,
    configText: configText as string,
    dir,
    stateVolume: stateMount.name as string,
  };
}

/**
 * Where the pod's stateDir lives: "emptyDir" (gone with the pod), "hostPath" (the node's disk) or
 * "claim" (a StatefulSet's PersistentVolumeClaim). Rollback floors survive only the last two.
 */
function stateStorage(workload: K8sObject, volumeName: string): "emptyDir" | "hostPath" | "claim" | "other" {
  const claim = (workload.spec.volumeClaimTemplates ?? []).find(
    (c: K8sObject) => c.metadata.name === volumeName,
  );
  const volume = workload.spec.template.spec.volumes.find((v: { name: string }) => v.name === volumeName);
  if (claim && volume) throw new Error(`${volumeName} is both a volume and a claim template`);
  if (claim) return "claim";
  if (volume?.emptyDir) return "emptyDir";
  if (volume?.hostPath) return "hostPath";
  return "other";
}

describe("deploy/kubernetes", () => {
  it("base: 3 spread replicas, Service, budget, NetworkPolicy, generated ConfigMaps, all schema-valid", async () => {
    const objects = render(`${ROOT}/base`);
    validateAll(objects);
    expect(objects.map((o) => o.kind).sort()).toEqual([
      "ConfigMap",
      "ConfigMap",
      "Deployment",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "Service",
    ]);
    const { pod, config, workload, stateVolume } = await checkWorkload(objects, "Deployment");
    const deployment = objects.find((o) => o.kind === "Deployment") as K8sObject;
    expect(deployment.spec.replicas).toBe(3);
    expect(stateStorage(workload, stateVolume)).toBe("emptyDir"); // README: overlays/statefulset persists
    expect(pod.affinity.podAntiAffinity).toBeDefined();
    expect(config.listen.host).toBe("0.0.0.0");
    // Generated names carry the content hash, and the pod refers to those names.
    const names = objects.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name);
    expect(names.every((n) => /^trustgate-(config|policies)-[a-z0-9]{10}$/.test(n))).toBe(true);
    // The shipped policies are the repository's examples.
    const policies = objects.find((o) => o.metadata.name.startsWith("trustgate-policies-")) as K8sObject;
    const files = (await readdir("policies")).filter((f) => f.endsWith(".yaml")).sort();
    expect(Object.keys(policies.data ?? {}).sort()).toEqual(files);
    for (const f of files) expect(policies.data?.[f]).toBe(await readFile(join("policies", f), "utf8"));
    // The Service and the budget select the Deployment's pods.
    const labels = pod.metadata?.labels ?? deployment.spec.template.metadata.labels;
    for (const kind of ["Service", "PodDisruptionBudget", "NetworkPolicy"]) {
      const o = objects.find((x) => x.kind === kind) as K8sObject;
      const sel = o.spec.selector?.matchLabels ?? o.spec.selector ?? o.spec.podSelector.matchLabels;
      expect(labels, kind).toMatchObject(sel);
    }
  });

  it("base + hpa and base + servicemonitor components render and validate", async () => {
    for (const [component, kind] of [
      ["hpa", "HorizontalPodAutoscaler"],
      ["servicemonitor", "ServiceMonitor"],
    ] as const) {
      const dir = await baseWith(component);
      try {
        const objects = render(dir);
        validateAll(objects);
        expect(objects.filter((o) => o.kind === kind)).toHaveLength(1);
        await checkWorkload(objects, "Deployment");
      } finally {
        spawnSync("rm", ["-rf", dir]);
      }
    }
    const both = await baseWith("hpa", "servicemonitor");
    try {
      const objects = render(both);
      validateAll(objects);
      const hpa = objects.find((o) => o.kind === "HorizontalPodAutoscaler") as K8sObject;
      expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "trustgate" });
      expect(hpa.spec.minReplicas).toBe(3);
      // The autoscaler owns the count: no spec.replicas left to reset it on the next apply.
      expect((objects.find((o) => o.kind === "Deployment") as K8sObject).spec.replicas).toBeUndefined();
    } finally {
      spawnSync("rm", ["-rf", both]);
    }
  });

  it("node-local: a loopback hostNetwork DaemonSet whose init container writes containerd's hosts.toml", async () => {
    const objects = render(`${ROOT}/overlays/node-local`);
    validateAll(objects);
    expect(objects.map((o) => o.kind).sort()).toEqual(["ConfigMap", "ConfigMap", "DaemonSet"]);
    const { pod, config, dir, workload, stateVolume } = await checkWorkload(objects, "DaemonSet");
    expect(pod.hostNetwork).toBe(true);
    // The trust state outlives the pod: the node's /var/lib/trustgate, created if missing and
    // handed to the non-root user (fsGroup does not apply to hostPath) before trustgate starts.
    expect(stateStorage(workload, stateVolume)).toBe("hostPath");
    const stateHostPath = pod.volumes.find((v: { name: string }) => v.name === stateVolume).hostPath;
    expect(stateHostPath).toEqual({ path: "/var/lib/trustgate", type: "DirectoryOrCreate" });
    const owner = pod.initContainers.find((c: { name: string }) => c.name === "state-owner");
    expect(pod.initContainers.indexOf(owner)).toBe(0);
    expect(owner.command).toEqual([
      "chown",
      `${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`,
      config.stateDir,
    ]);
    expect(owner.volumeMounts).toEqual([{ name: stateVolume, mountPath: config.stateDir }]);
    expect(owner.securityContext.capabilities).toEqual({ drop: ["ALL"], add: ["CHOWN"] });
    expect(owner.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(pod.priorityClassName).toBe("system-node-critical");
    expect(config.listen.host).toBe("127.0.0.1");
    expect(config.admin?.listen.host).toBe("127.0.0.1");
    const main = pod.containers.find((c: { name: string }) => c.name === "trustgate");
    expect(main.readinessProbe.httpGet.host).toBe("127.0.0.1");

    const init = pod.initContainers.find((c: { name: string }) => c.name === "containerd-hosts");
    expect(init.args).toEqual([
      "containerd-hosts",
      "--config",
      "/etc/trustgate/config.yaml",
      "--out",
      "/etc/containerd/certs.d",
    ]);
    const out = init.volumeMounts.find(
      (m: { mountPath: string }) => m.mountPath === "/etc/containerd/certs.d",
    );
    const hostPath = pod.volumes.find((v: { name: string }) => v.name === out.name).hostPath;
    expect(hostPath.path).toBe("/etc/containerd/certs.d");

    // The init container's command, run with its arguments against the rendered config.yaml.
    const certs = join(dir, "certs.d");
    const args = [...init.args.slice(1)];
    args[args.indexOf("/etc/trustgate/config.yaml")] = join(dir, "config.yaml");
    args[args.indexOf("/etc/containerd/certs.d")] = certs;
    const write = process.stdout.write;
    process.stdout.write = () => true;
    try {
      expect(await containerdHosts(args)).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    const toml = await readFile(join(certs, "docker.io", "hosts.toml"), "utf8");
    expect(toml).toMatch(/^server = "http:\/\/127\.0\.0\.1:5000"$/m);
  });

  it("statefulset: the base's pods with one PersistentVolumeClaim per replica for stateDir", async () => {
    const objects = render(`${ROOT}/overlays/statefulset`);
    validateAll(objects);
    expect(objects.map((o) => o.kind).sort()).toEqual([
      "ConfigMap",
      "ConfigMap",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "Service",
      "Service",
      "StatefulSet",
    ]);
    const { pod, workload, stateVolume, config } = await checkWorkload(objects, "StatefulSet");
    expect(workload.spec.replicas).toBe(3);
    expect(stateStorage(workload, stateVolume)).toBe("claim");
    const claim = workload.spec.volumeClaimTemplates.find((c: K8sObject) => c.metadata.name === stateVolume);
    expect(claim.spec.accessModes).toEqual(["ReadWriteOnce"]);
    expect(claim.spec.resources.requests.storage).toBe("1Gi");
    // The claim is mounted at stateDir and the non-root user can write it: the kubelet gives the
    // volume to fsGroup, the group the process runs as.
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    const main = pod.containers.find((c: { name: string }) => c.name === "trustgate");
    expect(main.volumeMounts.find((m: { name: string }) => m.name === stateVolume).mountPath).toBe(
      config.stateDir,
    );
    // The governing Service names the StatefulSet's pods; all Services and the budget select them.
    const headless = objects.find(
      (o) => o.kind === "Service" && o.metadata.name === workload.spec.serviceName,
    );
    expect(headless?.spec.clusterIP).toBe("None");
    for (const o of objects.filter((x) =>
      ["Service", "PodDisruptionBudget", "NetworkPolicy"].includes(x.kind),
    )) {
      const sel = o.spec.selector?.matchLabels ?? o.spec.selector ?? o.spec.podSelector.matchLabels;
      expect(workload.spec.template.metadata.labels, `${o.kind} ${o.metadata.name}`).toMatchObject(sel);
    }
    // The same pods as the base Deployment but for the state volume, so the two cannot drift.
    const base = render(`${ROOT}/base`).find((o) => o.kind === "Deployment") as K8sObject;
    const withoutState = (t: { spec: { volumes: { name: string }[] } }) => ({
      ...t,
      spec: { ...t.spec, volumes: t.spec.volumes.filter((v) => v.name !== stateVolume) },
    });
    expect(workload.spec.template).toEqual(withoutState(base.spec.template));
    expect(workload.spec.selector).toEqual(base.spec.selector);
  });
});
