import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';
import { z } from 'zod';

/**
 * Offline validation of deploy/k8s: every YAML document is checked against the Kubernetes 1.27 schemas
 * (kubernetes-models' validators), Istio's (@kubernetes-models/istio), or a schema of our own for the few
 * formats no package ships (kustomize files, the Prometheus Adapter config, the Prometheus Operator's
 * PodMonitor). The packages' validators accept unknown fields (a typo such as `livenessProbes` would pass),
 * so field names are checked separately against the same packages' TypeScript types (excess properties).
 */

export const repo_dir = fileURLToPath(new URL('../../', import.meta.url));
export const k8s_dir = join(repo_dir, 'deploy/k8s');

// biome-ignore lint/suspicious/noExplicitAny: manifests are arbitrary parsed YAML
export type Manifest = Record<string, any>;
export interface ManifestDoc {
  file: string;
  object: Manifest;
}

export class ManifestInvalidError extends Error {
  override name = 'ManifestInvalidError';
}

export function yamlFiles(dir = k8s_dir): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .map((f) => join(dir, f))
    .sort();
}

/** Every document of a YAML file; a syntax error (or an empty document) is an error, not a skip. */
export function loadDocs(file: string): ManifestDoc[] {
  return parseDocs(readFileSync(file, 'utf8'), file);
}

export function parseDocs(text: string, file: string): ManifestDoc[] {
  return parseAllDocuments(text).map((doc, i) => {
    if (doc.errors.length > 0) throw new ManifestInvalidError(`${file} #${i}: ${doc.errors[0]!.message}`);
    const object: unknown = doc.toJS();
    if (typeof object !== 'object' || object === null || Array.isArray(object))
      throw new ManifestInvalidError(`${file} #${i}: not an object`);
    return { file, object: object as Manifest };
  });
}

/** The objects a kustomization lists under `resources` (files only; directories are other kustomizations). */
export function kustomizationObjects(dir: string): Manifest[] {
  const k = loadDocs(join(dir, 'kustomization.yaml'))[0]!.object;
  return (k.resources as string[]).flatMap((r) => loadDocs(join(dir, r)).map((d) => d.object));
}

// ---- schemas of our own, for what no package ships

const kustomizeImage = z
  .object({ name: z.string(), newName: z.string().optional(), newTag: z.string() })
  .strict();
const kustomizePatch = z.object({ path: z.string() }).strict();
const kustomization = z
  .object({
    apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
    kind: z.literal('Kustomization'),
    namespace: z.string().optional(),
    resources: z.array(z.string()).min(1),
    components: z.array(z.string()).optional(),
    images: z.array(kustomizeImage).optional(),
    patches: z.array(kustomizePatch).optional(),
  })
  .strict();
const kustomizeComponent = z
  .object({
    apiVersion: z.literal('kustomize.config.k8s.io/v1alpha1'),
    kind: z.literal('Component'),
    resources: z.array(z.string()).optional(),
    patches: z.array(kustomizePatch).optional(),
  })
  .strict();

const labels = z.record(z.string(), z.string());
const podMonitor = z
  .object({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('PodMonitor'),
    metadata: z.object({ name: z.string(), namespace: z.string(), labels: labels.optional() }).strict(),
    spec: z
      .object({
        jobLabel: z.string().optional(),
        selector: z.object({ matchLabels: labels }).strict(),
        podMetricsEndpoints: z
          .array(
            z
              .object({
                port: z.string(),
                scheme: z.enum(['http', 'https']),
                path: z.string().startsWith('/'),
                interval: z.string().regex(/^\d+[smh]$/),
                tlsConfig: z
                  .object({ insecureSkipVerify: z.boolean().optional(), serverName: z.string().optional() })
                  .strict()
                  .optional(),
              })
              .strict(),
          )
          .min(1),
      })
      .strict(),
  })
  .strict();

/** The Prometheus Adapter's config file (the `rules` part we use): github.com/kubernetes-sigs/prometheus-adapter docs/config.md. */
export const adapterConfig = z
  .object({
    rules: z
      .array(
        z
          .object({
            seriesQuery: z.string().min(1),
            seriesFilters: z
              .array(z.object({ is: z.string() }).or(z.object({ isNot: z.string() })))
              .optional(),
            resources: z
              .object({
                overrides: z.record(
                  z.string(),
                  z.object({ resource: z.string(), group: z.string().optional() }).strict(),
                ),
              })
              .strict(),
            name: z.object({ matches: z.string(), as: z.string().min(1) }).strict(),
            metricsQuery: z
              .string()
              .refine((q) => q.includes('<<.Series>>') && q.includes('<<.LabelMatchers>>'), {
                message: 'metricsQuery must use <<.Series>> and <<.LabelMatchers>>',
              })
              .refine((q) => (q.match(/<<[^>]*>>/g) ?? []).every((t) => adapter_template_vars.has(t)), {
                message: 'metricsQuery uses an unknown template variable',
              }),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();
const adapter_template_vars = new Set(['<<.Series>>', '<<.LabelMatchers>>', '<<.GroupBy>>']);

function zodCheck(schema: z.ZodTypeAny, object: unknown, what: string): void {
  const parsed = schema.safeParse(object);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ManifestInvalidError(`${what}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
}

// ---- the packages' validators

/** The module of kubernetes-models (or @kubernetes-models/istio) that has this kind's model, or null. */
export function modelModule(apiVersion: string, kind: string): string | null {
  if (!/^[A-Za-z]+$/.test(kind)) return null;
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (group === '') return `kubernetes-models/${version}/${kind}`;
  if (group!.endsWith('.istio.io')) return `@kubernetes-models/istio/${group}/${version}/${kind}`;
  if (core_groups.has(group!)) return `kubernetes-models/${group}/${version}/${kind}`;
  return null;
}
const core_groups = new Set([
  'apps',
  'policy',
  'autoscaling',
  'batch',
  'networking.k8s.io',
  'rbac.authorization.k8s.io',
]);

/** Validates one document; throws ManifestInvalidError naming the file and the first failing field. */
export async function validateManifest(object: Manifest, what: string): Promise<void> {
  const { apiVersion, kind } = object;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string')
    throw new ManifestInvalidError(`${what}: apiVersion and kind are required`);
  if (kind === 'Kustomization') return zodCheck(kustomization, object, what);
  if (kind === 'Component') return zodCheck(kustomizeComponent, object, what);
  if (kind === 'PodMonitor') return zodCheck(podMonitor, object, what);
  const spec = modelModule(apiVersion, kind);
  if (spec === null) throw new ManifestInvalidError(`${what}: no schema for ${apiVersion} ${kind}`);
  let model: { validate(): void };
  try {
    const mod = (await import(spec)) as Record<string, new (data: unknown) => { validate(): void }>;
    model = new mod[kind]!(object);
  } catch {
    throw new ManifestInvalidError(`${what}: no schema for ${apiVersion} ${kind}`);
  }
  try {
    model.validate();
  } catch (err) {
    throw new ManifestInvalidError(`${what}: ${(err as Error).message.split('\n')[0]}`);
  }
  // The one ConfigMap with a config.yaml is the Prometheus Adapter's (prometheus-adapter.yaml).
  const adapter = kind === 'ConfigMap' ? object.data?.['config.yaml'] : undefined;
  if (adapter !== undefined) zodCheck(adapterConfig, parse(String(adapter)), `${what} config.yaml`);
}

/**
 * Field names: each object is written as a TypeScript literal that must satisfy its model's interface, and
 * the compiler's excess-property check names every field the schema does not have. Returns one message per
 * unknown or mistyped field (empty: all fields are the schema's). One compiler run for all objects.
 */
export function unknownFields(objects: { object: Manifest; what: string }[]): string[] {
  const lines: string[] = [];
  const where: string[] = [];
  objects.forEach(({ object, what }, i) => {
    const spec = modelModule(String(object.apiVersion), String(object.kind));
    if (spec === null) return;
    where[lines.push(`import type { I${object.kind} as T${i} } from '${spec}';`) - 1] = what;
    where[lines.push(`export const m${i} = (${JSON.stringify(object)}) satisfies T${i};`) - 1] = what;
  });
  const file = join(repo_dir, 'test/deploy/__manifests_check__.ts');
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const source = lines.join('\n');
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  // Reusing the previous program spares parsing the models' declaration files again (seconds each time).
  const program = ts.createProgram([file], options, host, previous_program);
  previous_program = program;
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    return `${where[line] ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

let previous_program: ts.Program | undefined;

// ---- kustomize patches

/**
 * A strategic-merge patch applied the way kustomize applies one whose values are only maps and scalars:
 * maps merge key by key, scalars replace. (Lists merge by key in kustomize, e.g. containers by name; a patch
 * with a list is refused here so this never silently differs from kustomize.)
 */
export function mergePatch(target: Manifest, patch: Manifest, path = ''): Manifest {
  const out: Manifest = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (Array.isArray(value))
      throw new ManifestInvalidError(`patch ${path}${key}: lists are not supported here`);
    const inner = target[key];
    out[key] =
      typeof value === 'object' && value !== null && typeof inner === 'object' && inner !== null
        ? mergePatch(inner, value, `${path}${key}.`)
        : value;
  }
  return out;
}

/** The files kustomizations use as patches, each with the object it patches (same kind, name, namespace). */
export function patchFiles(): Map<string, string> {
  const patches = new Map<string, string>();
  for (const file of yamlFiles().filter((f) => f.endsWith('kustomization.yaml'))) {
    for (const p of loadDocs(file)[0]!.object.patches ?? []) patches.set(join(dirname(file), p.path), file);
  }
  return patches;
}

// ---- kustomize (kubectl's built-in kustomize; the repository's manifests do not depend on it)

export function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;
}

/** `kubectl kustomize dir`, offline: the objects `kubectl apply -k dir` would send. */
export function renderKustomization(dir: string): Manifest[] {
  const out = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 30_000 });
  if (out.status !== 0) throw new ManifestInvalidError(`kubectl kustomize ${dir}: ${out.stderr}`);
  return parseDocs(out.stdout, dir).map((d) => d.object);
}

/** Renders a throw-away kustomization of `resources` plus `components` (paths under deploy/k8s). */
export function renderWith(resource: string, components: string[]): Manifest[] {
  const dir = mkdtempSync(join(tmpdir(), 'kustomize-'));
  try {
    const rel = (p: string) => relative(dir, join(k8s_dir, p));
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      JSON.stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: [rel(resource)],
        components: components.map(rel),
      }),
    );
    return renderKustomization(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
