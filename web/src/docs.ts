// The API docs page (`/docs`): a small renderer of /openapi.json — operations grouped by tag,
// each with its parameters, request body and answers; schemas as nested property lists.
// Self-written so the page needs nothing from a CDN.
export {};

type Json = Record<string, unknown>;

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
};

let components: Json = {};

function resolve(schema: Json): [Json, string | null] {
  const ref = schema.$ref;
  if (typeof ref !== 'string') return [schema, null];
  const name = ref.split('/').pop()!;
  return [((components.schemas as Json | undefined)?.[name] as Json | undefined) ?? {}, name];
}

function typeOf(s: Json): string {
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map((x) => typeOf(resolve(x)[0])).join(' | ');
  if (s.type === 'array') return `${typeOf(resolve((s.items as Json | undefined) ?? {})[0])}[]`;
  const t = Array.isArray(s.type) ? s.type.join(' | ') : String(s.type ?? 'any');
  const limits = [
    s.minimum !== undefined ? `≥ ${String(s.minimum)}` : '',
    s.exclusiveMinimum !== undefined ? `> ${String(s.exclusiveMinimum)}` : '',
    s.maximum !== undefined ? `≤ ${String(s.maximum)}` : '',
    s.maxLength !== undefined ? `length ≤ ${String(s.maxLength)}` : '',
    s.pattern !== undefined ? `/${String(s.pattern)}/` : '',
  ].filter(Boolean);
  return limits.length ? `${t} (${limits.join(', ')})` : t;
}

/** A schema as a nested list of its properties (depth-limited). */
function renderSchema(schema: Json, depth = 0): HTMLElement {
  const [s, name] = resolve(schema);
  const list = el('ul', { class: 'schema' });
  if (name && depth > 0) {
    list.append(el('li', {}, el('a', { href: `#schema-${name}` }, name)));
    return list;
  }
  const props = s.properties as Record<string, Json> | undefined;
  if (!props) {
    list.append(el('li', {}, el('span', { class: 'type' }, typeOf(s))));
    return list;
  }
  const required = new Set((s.required as string[] | undefined) ?? []);
  for (const [key, raw] of Object.entries(props)) {
    const [p] = resolve(raw);
    const li = el('li', {}, el('code', {}, key), ' ', el('span', { class: 'type' }, typeOf(p)));
    if (required.has(key)) li.append(' ', el('span', { class: 'req' }, 'required'));
    if (typeof p.description === 'string') li.append(` — ${p.description}`);
    const inner = p.type === 'array' ? resolve((p.items as Json | undefined) ?? {})[0] : p;
    if (inner.properties && depth < 3) li.append(renderSchema(inner, depth + 1));
    list.append(li);
  }
  if (s.additionalProperties === false) list.append(el('li', { class: 'hint' }, 'no other properties'));
  return list;
}

function renderContent(content: Json | undefined): HTMLElement | null {
  if (!content) return null;
  const wrap = el('div');
  for (const [type, media] of Object.entries(content)) {
    wrap.append(el('div', {}, el('code', {}, type)));
    const schema = (media as Json).schema as Json | undefined;
    if (schema) wrap.append(renderSchema(schema));
  }
  return wrap;
}

function renderOp(path: string, method: string, op: Json): HTMLElement {
  const body = el('div', { class: 'body' });
  if (typeof op.description === 'string') body.append(el('p', {}, op.description));
  const security = op.security as Json[] | undefined;
  body.append(el('p', { class: 'hint' }, security && security.length ? `Authorization: Bearer — ${security.map((x) => Object.keys(x)[0]).join(' or ')}` : 'no authorization'));
  const params = op.parameters as Json[] | undefined;
  if (params?.length) {
    body.append(el('h4', {}, 'Parameters'));
    const ul = el('ul', { class: 'schema' });
    for (const p of params) {
      const li = el('li', {}, el('code', {}, String(p.name)), ` (${String(p.in)}) `, el('span', { class: 'type' }, typeOf((p.schema as Json | undefined) ?? {})));
      if (p.required) li.append(' ', el('span', { class: 'req' }, 'required'));
      if (typeof p.description === 'string') li.append(` — ${p.description}`);
      ul.append(li);
    }
    body.append(ul);
  }
  const rb = op.requestBody as Json | undefined;
  if (rb) {
    body.append(el('h4', {}, 'Request body'));
    if (typeof rb.description === 'string') body.append(el('p', {}, rb.description));
    const c = renderContent(rb.content as Json | undefined);
    if (c) body.append(c);
  }
  body.append(el('h4', {}, 'Answers'));
  for (const [status, r] of Object.entries((op.responses as Json | undefined) ?? {})) {
    const resp = r as Json;
    body.append(el('div', {}, el('strong', {}, status), ` ${String(resp.description ?? '')}`));
    const c = renderContent(resp.content as Json | undefined);
    if (c) body.append(c);
  }
  const summary = el('summary', {}, el('span', { class: `method ${method}` }, method), el('span', { class: 'path' }, path), el('span', { class: 'hint' }, String(op.summary ?? '')));
  return el('details', { class: 'op', 'data-method': method, 'data-path': path }, summary, body);
}

async function main(): Promise<void> {
  const res = await fetch('/openapi.json');
  if (!res.ok) throw new Error(`GET /openapi.json answered ${res.status}`);
  const spec = (await res.json()) as Json;
  components = (spec.components as Json | undefined) ?? {};
  const info = spec.info as Json;
  document.getElementById('info')!.replaceChildren(el('h2', {}, `${String(info.title)} ${String(info.version)}`), el('p', {}, String(info.description ?? '')), el('p', { class: 'hint' }, `OpenAPI ${String(spec.openapi)}`));

  const byTag = new Map<string, HTMLElement[]>();
  for (const [path, item] of Object.entries(spec.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = ((op as Json).tags as string[] | undefined)?.[0] ?? 'other';
      byTag.set(tag, [...(byTag.get(tag) ?? []), renderOp(path, method, op as Json)]);
    }
  }
  const ops = document.getElementById('ops')!;
  const tags = (spec.tags as Json[] | undefined) ?? [];
  for (const [tag, items] of byTag) {
    const t = tags.find((x) => x.name === tag);
    ops.append(el('section', { class: 'card' }, el('h2', {}, tag), el('p', { class: 'hint' }, String(t?.description ?? '')), ...items));
  }
  const schemas = document.getElementById('schemas')!;
  for (const [name, schema] of Object.entries((components.schemas as Record<string, Json> | undefined) ?? {})) {
    schemas.append(el('div', { id: `schema-${name}` }, el('h4', {}, name), renderSchema(schema)));
  }
  document.body.dataset.state = 'done';
}

main().catch((err: unknown) => {
  document.getElementById('info')!.replaceChildren(el('p', { class: 'error' }, `Could not render the API: ${(err as Error).message}`));
  document.body.dataset.state = 'error';
});
