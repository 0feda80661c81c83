import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import {
  k8s_dir,
  kubectlAvailable,
  loadDocs,
  type Manifest,
  ManifestInvalidError,
  mergePatch,
  parseDocs,
  patchFiles,
  renderKustomization,
  renderWith,
  unknownFields,
  validateManifest,
  yamlFiles,
} from './manifests.js';

const patches = patchFiles();
const all_docs = yamlFiles().flatMap((file) =>
  loadDocs(file).map((d, i) => ({ file, object: d.object, what: `${relative(k8s_dir, file)} #${i}` })),
);
/** Whole objects; a patch file is validated merged into the object it patches, as kustomize applies it. */
const docs = all_docs.map((d) => {
  if (!patches.has(d.file)) return d;
  const key = (o: Manifest) => `${o.kind}/${o.metadata?.namespace}/${o.metadata?.name}`;
  const target = all_docs.find((t) => !patches.has(t.file) && key(t.object) === key(d.object));
  assert.ok(target, `${d.what}: patches no object of deploy/k8s`);
  return {
    ...d,
    object: mergePatch(target.object, d.object),
    what: `${d.what} (merged into ${target.what})`,
  };
});
const byKind = (kind: string) => docs.filter((d) => d.object.kind === kind).map((d) => d.object);

/** The real manifest of a kind, deep-copied, for a test to break. */
function copyOf(kind: string, name?: string): Manifest {
  const found = byKind(kind).find((o) => name === undefined || o.metadata?.name === name);
  assert.ok(found, `no ${kind} ${name ?? ''} in deploy/k8s`);
  return structuredClone(found);
}

async function rejects(object: Manifest, pattern: RegExp): Promise<void> {
  await assert.rejects(validateManifest(object, 'broken'), (err: unknown) => {
    assert.ok(err instanceof ManifestInvalidError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
}

describe('deploy/k8s manifests validate offline against the Kubernetes and Istio schemas', () => {
  it('finds the manifests the issue asks for', () => {
    const kinds = new Set(docs.map((d) => d.object.kind));
    for (const kind of [
      'Namespace',
      'ServiceAccount',
      'ConfigMap',
      'Secret',
      'Service',
      'Deployment',
      'PodDisruptionBudget',
      'HorizontalPodAutoscaler',
      'NetworkPolicy',
      'PeerAuthentication',
      'Kustomization',
      'Component',
    ])
      assert.ok(kinds.has(kind), `a ${kind} in deploy/k8s`);
  });

  it('every document of every YAML file validates against its schema', async () => {
    for (const { object, what } of docs) await validateManifest(object, what);
  });

  it('every field is one the schema knows (the validators alone accept unknown fields)', () => {
    assert.deepEqual(unknownFields(docs), []);
  });

  it('rejects broken manifests: wrong types, unknown enum values, missing fields, unknown kinds', async () => {
    const deployment = copyOf('Deployment');
    deployment.spec.template.spec.containers[0].ports[0].containerPort = '8443';
    await rejects(deployment, /containerPort must be integer/);
    const service = copyOf('Service');
    service.spec.externalTrafficPolicy = 'Locall';
    await rejects(service, /externalTrafficPolicy must be equal to one of the allowed values/);
    const hpa = copyOf('HorizontalPodAutoscaler');
    delete hpa.spec.maxReplicas;
    await rejects(hpa, /must have required property maxReplicas/);
    const peer = copyOf('PeerAuthentication');
    peer.spec.mtls.mode = 'STRICTLY';
    await rejects(peer, /mode must be equal to one of the allowed values/);
    await rejects({ apiVersion: 'example.com/v1', kind: 'Widget' }, /no schema for example.com\/v1 Widget/);
    const kustomization = structuredClone(byKind('Kustomization')[0]!);
    kustomization.resource = kustomization.resources;
    await rejects(kustomization, /Unrecognized key/);
  });

  it('rejects a broken Prometheus Adapter rule', async () => {
    const adapter = copyOf('ConfigMap', 'payment-node-adapter-config');
    const broken = (edit: (text: string) => string) => {
      const copy = structuredClone(adapter);
      copy.data['config.yaml'] = edit(copy.data['config.yaml']);
      return copy;
    };
    await rejects(
      broken((t) => t.replace('metricsQuery:', 'metricQuery:')),
      /metricsQuery: Required/,
    );
    await rejects(
      broken((t) => t.replace('<<.GroupBy>>', '<<.Group>>')),
      /unknown template variable/,
    );
    await rejects(
      broken((t) => t.replace('as: ', 'named: ')),
      /name\.as: Required/,
    );
  });

  it('names unknown and mistyped fields', () => {
    const deployment = copyOf('Deployment');
    const container = deployment.spec.template.spec.containers[0];
    container.livenessProbes = container.livenessProbe;
    const peer = copyOf('PeerAuthentication');
    peer.spec.mtls = { mode: 'STRICT', strict: true };
    const found = unknownFields([
      { object: deployment, what: 'broken deployment' },
      { object: peer, what: 'broken peer' },
    ]);
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(found[0]!, /^broken deployment: .*'"livenessProbes"' does not exist/);
    assert.match(found[1]!, /^broken peer: .*'"strict"' does not exist/);
  });

  it('a patch is merged key by key into its target; a patch with a list is refused', () => {
    const merged = mergePatch({ a: { b: 1, c: 2 }, d: [1] }, { a: { c: 3 } });
    assert.deepEqual(merged, { a: { b: 1, c: 3 }, d: [1] });
    assert.throws(() => mergePatch({ a: [1] }, { a: [2] }), ManifestInvalidError);
  });

  it('rejects a YAML syntax error', () => {
    assert.throws(() => parseDocs('a: [1, 2\n', 'broken.yaml'), ManifestInvalidError);
  });
});

describe('kustomize layout', () => {
  const kustomizations = yamlFiles().filter((f) => f.endsWith('kustomization.yaml'));

  it('every path a kustomization names exists; every manifest in base is listed in it', () => {
    for (const file of kustomizations) {
      const k = loadDocs(file)[0]!.object;
      const dir = dirname(file);
      for (const p of [
        ...(k.resources ?? []),
        ...(k.components ?? []),
        ...(k.patches ?? []).map((x: Manifest) => x.path),
      ])
        assert.ok(existsSync(join(dir, p)), `${relative(k8s_dir, file)} names ${p}`);
    }
    const base = loadDocs(join(k8s_dir, 'base/kustomization.yaml'))[0]!.object;
    const listed = new Set(base.resources);
    for (const file of yamlFiles(join(k8s_dir, 'base')))
      if (!file.endsWith('kustomization.yaml'))
        assert.ok(listed.has(relative(join(k8s_dir, 'base'), file)), file);
  });

  it('the base holds no Secret and no Istio object (both optional or created by hand)', () => {
    const text = (f: string) => readFileSync(f, 'utf8');
    for (const file of yamlFiles(join(k8s_dir, 'base'))) {
      assert.doesNotMatch(text(file), /^kind: Secret$/m, file);
      assert.doesNotMatch(text(file), /istio\.io/, file);
    }
  });

  const skip = kubectlAvailable() ? false : 'kubectl (with its built-in kustomize) is not on PATH';

  it('the overlays and components render with kustomize, and what they render validates', {
    skip,
  }, async () => {
    const renders: [string, Manifest[]][] = [
      ['overlays/production', renderKustomization(join(k8s_dir, 'overlays/production'))],
      ['overlays/production-istio', renderKustomization(join(k8s_dir, 'overlays/production-istio'))],
      [
        'production + every component',
        renderWith('overlays/production', [
          'components/istio-mtls',
          'components/otlp-egress',
          'components/podmonitor',
        ]),
      ],
    ];
    const rendered = renders.flatMap(([name, objects]) =>
      objects.map((object, i) => ({ object, what: `${name} #${i}` })),
    );
    for (const { object, what } of rendered) await validateManifest(object, what);
    assert.deepEqual(unknownFields(rendered), []);
    for (const [name, objects] of renders) {
      for (const object of objects) {
        if (object.kind !== 'Namespace')
          assert.equal(object.metadata.namespace, 'payments', `${name}: ${object.kind}`);
      }
      const image = objects.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0].image;
      assert.equal(image, 'registry.example.com/payments/payment-node:0.1.0', `${name}: the overlay's image`);
      assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0, `${name}: no Secret`);
    }
    const istio = renders[1]![1];
    assert.equal(istio.find((o) => o.kind === 'PeerAuthentication')?.spec.mtls.mode, 'STRICT');
    assert.equal(istio.find((o) => o.kind === 'Namespace')?.metadata.labels['istio-injection'], 'enabled');
    assert.equal(
      renders[0]![1].filter((o) => o.kind === 'PeerAuthentication').length,
      0,
      'Istio stays optional',
    );
  });
});
