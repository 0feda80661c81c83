import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { ConfigError, configKeys, loadConfig } from '../../src/config.js';
import {
  brokers,
  cleanup,
  freePort,
  type NodeProcess,
  redis_url,
  startNode,
  stopNode,
  uniqueName,
} from '../integration/helpers.js';
import { httpsRequest, selfSignedCert } from '../support/tls.js';
import {
  adapterConfig,
  k8s_dir,
  kustomizationObjects,
  loadDocs,
  type Manifest,
  repo_dir,
} from './manifests.js';

/**
 * The manifests fit together and fit the node: selectors select the pods, probes and the Service name the
 * container's real port and routes, every environment variable is a config key, the time bounds hold, and
 * the metric the HPA scales on exists on a live node started with the manifests' own environment.
 */

const base = kustomizationObjects(join(k8s_dir, 'base'));
const components = ['istio-mtls', 'otlp-egress', 'podmonitor'].flatMap((c) =>
  kustomizationObjects(join(k8s_dir, 'components', c)),
);
const examples = loadDocs(join(k8s_dir, 'secret.example.yaml')).map((d) => d.object);
const adapter_map = loadDocs(join(k8s_dir, 'prometheus-adapter.yaml'))[0]!.object;
const adapter_rules = adapterConfig.parse(parse(adapter_map.data['config.yaml'])).rules;

function one(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind} ${name ?? ''}`);
  return found[0]!;
}
const deployment = one(base, 'Deployment');
const pod = deployment.spec.template;
const container = pod.spec.containers[0];
const config_map = one(base, 'ConfigMap', container.envFrom[0].configMapRef.name);
const hpa = one(base, 'HorizontalPodAutoscaler');
const defaults = JSON.parse(readFileSync(join(repo_dir, 'config/default.json'), 'utf8'));
/** A config value as the pods get it: the ConfigMap's, else config/default.json's. */
const effective = (key: string): number => Number(config_map.data[key.toUpperCase()] ?? defaults[key]);

/** A non-empty selector whose every label the pod template has. */
function selects(selector: Record<string, string> | undefined, what: string): void {
  assert.ok(selector && Object.keys(selector).length > 0, `${what}: a selector`);
  for (const [k, v] of Object.entries(selector))
    assert.equal(pod.metadata.labels[k], v, `${what}: ${k}=${v}`);
}

/** The container port a probe, Service or policy names (by name or number). */
function containerPort(ref: string | number): number {
  const port = container.ports.find((p: Manifest) => p.name === ref || p.containerPort === ref);
  assert.ok(port, `container port ${ref}`);
  return port.containerPort;
}

const probes = ['startupProbe', 'readinessProbe', 'livenessProbe'].map((name) => ({
  name,
  ...container[name],
}));
const pre_stop_s = Number(container.lifecycle.preStop.exec.command[1]);

describe('manifest wiring', () => {
  it('selectors select the pods: Deployment, Service, PDB, NetworkPolicies, spread constraints, PodMonitor', () => {
    selects(deployment.spec.selector.matchLabels, 'Deployment selector');
    selects(one(base, 'Service', 'payment-api').spec.selector, 'Service selector');
    selects(one(base, 'PodDisruptionBudget').spec.selector.matchLabels, 'PDB selector');
    for (const policy of [...base, ...components].filter((o) => o.kind === 'NetworkPolicy'))
      selects(policy.spec.podSelector.matchLabels, `NetworkPolicy ${policy.metadata.name}`);
    for (const c of pod.spec.topologySpreadConstraints)
      selects(c.labelSelector.matchLabels, `topology spread ${c.topologyKey}`);
    const monitor = one(components, 'PodMonitor');
    selects(monitor.spec.selector.matchLabels, 'PodMonitor selector');
    // The rules select job="payment-node": the operator takes the job from this pod label.
    assert.equal(monitor.spec.jobLabel, 'app.kubernetes.io/name');
    assert.equal(containerPort(monitor.spec.podMetricsEndpoints[0].port), Number(config_map.data.PORT));
    assert.ok(
      pod.spec.topologySpreadConstraints.some(
        (c: Manifest) => c.topologyKey === 'topology.kubernetes.io/zone',
      ),
    );
  });

  it('the HPA scales this Deployment, within 1..P, on the metric the adapter rule serves', () => {
    const ref = hpa.spec.scaleTargetRef;
    assert.deepEqual(
      [ref.apiVersion, ref.kind, ref.name],
      ['apps/v1', 'Deployment', deployment.metadata.name],
    );
    assert.ok(hpa.spec.minReplicas >= 2, 'active-active: at least 2');
    assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the count; apply must not reset it');
    assert.ok(hpa.spec.maxReplicas <= effective('partitions'), 'maxReplicas <= P of the ConfigMap');
    assert.ok(hpa.spec.maxReplicas <= defaults.partitions, 'maxReplicas <= the default P');
    assert.ok(one(base, 'PodDisruptionBudget').spec.maxUnavailable < hpa.spec.minReplicas);
    const [metric] = hpa.spec.metrics;
    assert.equal(metric.type, 'Pods');
    assert.deepEqual(metric.pods.target, { type: 'AverageValue', averageValue: '500' });
    const rule = adapter_rules.find((r) => r.name.as === metric.pods.metric.name);
    assert.ok(rule, `an adapter rule serves ${metric.pods.metric.name}`);
    // A pods metric: the series are tied to namespace and pod objects.
    assert.equal(rule.resources.overrides.namespace?.resource, 'namespace');
    assert.equal(rule.resources.overrides.pod?.resource, 'pod');
    assert.equal(adapter_map.metadata.namespace, 'monitoring');
  });

  it('the Service sends 443 to the container port the node listens on (PORT), over TLS', () => {
    const service = one(base, 'Service', 'payment-api');
    assert.equal(service.spec.type, 'LoadBalancer');
    assert.equal(service.spec.externalTrafficPolicy, 'Local');
    const [port] = service.spec.ports;
    assert.equal(port.port, 443);
    assert.equal(containerPort(port.targetPort), Number(config_map.data.PORT));
    assert.ok(config_map.data.TLS_CERT_FILE && config_map.data.TLS_KEY_FILE, 'the node serves TLS');
  });

  it('probes use the node port, HTTPS (the node serves only TLS once TLS_* is set) and its health routes', () => {
    const routes = readFileSync(join(repo_dir, 'src/gateway/server.ts'), 'utf8');
    for (const probe of probes) {
      assert.equal(containerPort(probe.httpGet.port), Number(config_map.data.PORT), probe.name);
      assert.equal(probe.httpGet.scheme, 'HTTPS', probe.name);
      assert.ok(
        routes.includes(`app.get('${probe.httpGet.path}'`),
        `${probe.name}: ${probe.httpGet.path} is a route`,
      );
    }
    assert.deepEqual(
      probes.map((p) => p.httpGet.path),
      ['/healthz', '/readyz', '/healthz'],
    );
    assert.equal(pod.metadata.annotations['prometheus.io/port'], config_map.data.PORT);
    assert.equal(pod.metadata.annotations['prometheus.io/scheme'], 'https');
  });

  it('the NetworkPolicy opens exactly the container ports for ingress', () => {
    const policy = one(base, 'NetworkPolicy', 'payment-node');
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    const open = policy.spec.ingress.flatMap((r: Manifest) =>
      r.ports.map((p: Manifest) => containerPort(p.port)),
    );
    assert.deepEqual(open.sort(), container.ports.map((p: Manifest) => p.containerPort).sort());
    const egress = policy.spec.egress.flatMap((r: Manifest) => r.ports.map((p: Manifest) => p.port));
    assert.deepEqual([...new Set(egress)].sort(), [53, 6379, 9092]);
    const otlp = one(components, 'NetworkPolicy', 'payment-node-otlp');
    assert.deepEqual(otlp.spec.egress[0].ports, [{ port: 4318, protocol: 'TCP' }]);
  });

  it('every environment variable is a config key; secrets come from Secrets, never the ConfigMap', () => {
    const keys = new Set([...configKeys().map((k) => k.toUpperCase()), 'NODE_OPTIONS']);
    const names = [...Object.keys(config_map.data), ...container.env.map((e: Manifest) => e.name)];
    for (const name of names) assert.ok(keys.has(name), `${name} is a config key (src/config.ts)`);
    assert.equal(new Set(names).size, names.length, 'each variable set once');
    const secret_vars = [
      'API_KEYS',
      'VAULT_KEYS',
      'VAULT_ACTIVE_KEY_ID',
      'VAULT_FINGERPRINT_KEY',
      'REDIS_URL',
    ];
    for (const name of secret_vars) {
      assert.ok(!(name in config_map.data), `${name} is not in the ConfigMap`);
      const ref = container.env.find((e: Manifest) => e.name === name)?.valueFrom?.secretKeyRef;
      assert.ok(ref, `${name} from a Secret`);
      const example = one(examples, 'Secret', ref.name);
      assert.ok(ref.key in example.stringData, `${ref.name} example has ${ref.key}`);
    }
    assert.equal(
      container.env.find((e: Manifest) => e.name === 'NODE_ID').valueFrom.fieldRef.fieldPath,
      'metadata.name',
    );
  });

  it('the TLS files are the mounted kubernetes.io/tls Secret', () => {
    const volume = pod.spec.volumes.find((v: Manifest) => v.name === 'tls');
    const mount = container.volumeMounts.find((m: Manifest) => m.name === 'tls');
    assert.equal(one(examples, 'Secret', volume.secret.secretName).type, 'kubernetes.io/tls');
    assert.equal(config_map.data.TLS_CERT_FILE, `${mount.mountPath}/tls.crt`);
    assert.equal(config_map.data.TLS_KEY_FILE, `${mount.mountPath}/tls.key`);
  });

  it('the example Secret is refused by the node: its placeholders cannot run in production', () => {
    const env = podEnv('payment-node-0', exampleSecrets());
    assert.throws(() => loadConfig(env), ConfigError);
  });

  it('time bounds: grace period > preStop + shutdown_timeout_ms; startup budget > group join + a restore attempt', () => {
    const grace_s = pod.spec.terminationGracePeriodSeconds;
    assert.ok(grace_s > pre_stop_s + effective('shutdown_timeout_ms') / 1000, 'grace period vs the drain');
    assert.ok(grace_s > defaults.shutdown_timeout_ms / 1000, 'grace period vs the default drain');
    const startup = probes[0]!;
    // The adapter's rebalance timeout is the session timeout (src/streams/platformatic/group-consumer.ts):
    // the node's group join waits for the rebalance.
    const rebalance_timeout_s = effective('session_timeout_ms') / 1000;
    assert.ok(
      startup.periodSeconds * startup.failureThreshold >=
        rebalance_timeout_s + effective('startup_timeout_ms') / 1000,
    );
    const readiness = probes[1]!;
    assert.ok(
      readiness.periodSeconds * readiness.failureThreshold >= 10,
      'a routine restore does not unready',
    );
  });

  it('requests and limits are set; LANES fits the CPU limit with the main thread', () => {
    for (const r of ['requests', 'limits'])
      for (const k of ['cpu', 'memory']) assert.ok(container.resources[r][k]);
    const lanes = Number(config_map.data.LANES);
    assert.ok(lanes >= 1 && lanes <= Number(container.resources.limits.cpu) - 1);
  });
});

// ---- pod environment, as the kubelet would build it

/** The Secrets' values, by `secret/key`. */
type Secrets = Record<string, string>;

function exampleSecrets(): Secrets {
  const out: Secrets = {};
  for (const s of examples)
    for (const [k, v] of Object.entries(s.stringData)) out[`${s.metadata.name}/${k}`] = String(v);
  return out;
}

/** Real values for the example's keys, made here; fails when the example gains a key this test does not know. */
function liveSecrets(): Secrets {
  const made: Secrets = {
    'payment-node-secrets/API_KEYS': `merchant_k8s:${randomBytes(24).toString('hex')}`,
    'payment-node-secrets/VAULT_KEYS': `k8s1:${randomBytes(32).toString('base64')}`,
    'payment-node-secrets/VAULT_ACTIVE_KEY_ID': 'k8s1',
    'payment-node-secrets/VAULT_FINGERPRINT_KEY': randomBytes(32).toString('base64'),
    'payment-node-secrets/REDIS_URL': redis_url,
    'payment-node-tls/tls.crt': '(mounted)',
    'payment-node-tls/tls.key': '(mounted)',
  };
  assert.deepEqual(Object.keys(made).sort(), Object.keys(exampleSecrets()).sort());
  return made;
}

/** envFrom ConfigMaps, then env (later wins, as in Kubernetes); fieldRef metadata.name is the pod name. */
function podEnv(pod_name: string, secrets: Secrets): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom)
    Object.assign(env, one(base, 'ConfigMap', from.configMapRef.name).data);
  for (const e of container.env) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref)
      env[e.name] = secrets[`${ref.name}/${ref.key}`] ?? assert.fail(`no secret ${ref.name}/${ref.key}`);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = pod_name;
    else env[e.name] = e.value ?? assert.fail(`env ${e.name}: unsupported source`);
  }
  return env;
}

describe('a live node started with the manifests environment', { timeout: 120_000 }, () => {
  const topic_prefix = uniqueName('k8s');
  const redis_prefix = `${topic_prefix}:`;
  const tls = selfSignedCert();
  const secrets = liveSecrets();
  const api_key = secrets['payment-node-secrets/API_KEYS']!.split(':')[1]!;
  let node: NodeProcess;
  let port: number;
  const get = (path: string, headers: Record<string, string> = {}) =>
    httpsRequest(`https://127.0.0.1:${port}${path}`, { ca: tls.ca, headers });

  before(async () => {
    const env = podEnv('payment-node-5d8f7c9b6-x2k7p', secrets);
    // The Secret payment-node-tls as the kubelet mounts it: tls.crt and tls.key in the mount path.
    const mount = container.volumeMounts.find((m: Manifest) => m.name === 'tls').mountPath;
    copyFileSync(tls.cert_file, join(tls.dir, 'tls.crt'));
    copyFileSync(tls.key_file, join(tls.dir, 'tls.key'));
    port = await freePort();
    node = await startNode(
      {
        ...env,
        TLS_CERT_FILE: env.TLS_CERT_FILE!.replace(mount, tls.dir),
        TLS_KEY_FILE: env.TLS_KEY_FILE!.replace(mount, tls.dir),
        // Only what differs on this machine: the local broker (one, so replication 1), loopback, a free port
        // (PORT = the container port is checked above), this run's own topics and keys, and P = 2 instead of
        // 64 (64 partitions cost 64 transactional producers to start; P only bounds the HPA, checked above).
        KAFKA_BROKERS: brokers.join(','),
        REPLICATION_FACTOR: '1',
        HOST: '127.0.0.1',
        PORT: String(port),
        TOPIC_PREFIX: topic_prefix,
        REDIS_KEY_PREFIX: redis_prefix,
        PARTITIONS: '2',
      },
      90_000,
      tls.ca,
    );
  });

  after(async () => {
    if (node) await stopNode(node, 'SIGKILL');
    await cleanup(topic_prefix, redis_prefix);
    rmSync(tls.dir, { recursive: true, force: true });
  });

  it('answers every probe with 200 on its path over HTTPS; an unknown path is 404', async () => {
    for (const probe of probes) {
      const answer = await get(probe.httpGet.path);
      assert.equal(answer.status, 200, `${probe.name} ${probe.httpGet.path}: ${answer.body}`);
      assert.equal(answer.protocol, 'TLSv1.3');
    }
    assert.equal((await get('/readyzz')).status, 404);
  });

  it('exports the series the adapter rule reads, per partition, once a batch is processed', async () => {
    const created = await httpsRequest(`https://127.0.0.1:${port}/v1/accounts`, {
      ca: tls.ca,
      method: 'POST',
      headers: { authorization: `Bearer ${api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'acct_k8s', currency: 'EUR', kind: 'customer' }),
    });
    assert.equal(created.status, 201, created.body); // answered after its batch committed
    const path = pod.metadata.annotations['prometheus.io/path'];
    for (const rule of adapter_rules) {
      const series = seriesName(rule.seriesQuery);
      assert.match(series, new RegExp(rule.name.matches), 'name.matches matches the series');
      assertOnlySeriesTemplate(rule.metricsQuery);
      const samples = await waitForSamples(() => get(path), series);
      assert.ok(samples.length >= 1 && samples.length <= 2, `${series}: one sample per owned partition`);
      for (const s of samples) {
        assert.match(s.labels, /^\{partition="[01]"\}$/);
        assert.ok(Number.isFinite(s.value) && s.value >= 0);
      }
    }
    const metrics = await get(path);
    assert.doesNotMatch(
      metrics.body,
      /^consumer_lag_records_per_partition/m,
      'the HPA name is the adapter alias',
    );
  });

  it('drains and exits 0 within terminationGracePeriodSeconds after the preStop hook', async () => {
    const started = Date.now();
    const code = await stopNode(node, 'SIGTERM');
    const elapsed_s = (Date.now() - started) / 1000;
    assert.equal(code, 0, node.output.join(''));
    assert.ok(elapsed_s < pod.spec.terminationGracePeriodSeconds - pre_stop_s, `drained in ${elapsed_s} s`);
  });
});

/** `name{...}` → name; the rule must name its series plainly (no __name__ regex) so this test can check it. */
function seriesName(series_query: string): string {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{/.exec(series_query);
  assert.ok(m, `seriesQuery names one metric: ${series_query}`);
  return m[1]!;
}

/** The metricsQuery reads no metric of its own: only <<.Series>> (the one checked) and PromQL operators. */
function assertOnlySeriesTemplate(query: string): void {
  const words = query.replace(/<<[^>]*>>/g, '').match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  const promql = new Set(['avg', 'sum', 'count', 'max', 'min', 'by', 'without', 'rate', 'irate']);
  for (const w of words) assert.ok(promql.has(w), `metricsQuery names ${w}: check it against /metrics too`);
}

async function waitForSamples(
  scrape: () => Promise<{ status: number; body: string }>,
  name: string,
): Promise<{ labels: string; value: number }[]> {
  const deadline_ms = Date.now() + 10_000;
  for (;;) {
    const answer = await scrape();
    assert.equal(answer.status, 200);
    const samples = answer.body
      .split('\n')
      .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      .map((line) => ({
        labels: line.slice(name.length, line.lastIndexOf(' ')),
        value: Number(line.slice(line.lastIndexOf(' ') + 1)),
      }));
    if (samples.length > 0 || Date.now() > deadline_ms) return samples;
    await new Promise((r) => setTimeout(r, 100));
  }
}
