// validate.mjs: checks HTTP answers of the real daemon against docs/openapi.yaml.
//
// Usage: node validate.mjs SPEC.yaml ANSWERS.json
//        node validate.mjs SPEC.yaml -        (the answers on standard input, read once the
//                                              document's schemas are compiled, so a caller
//                                              can start it early)
//
// ANSWERS.json is a JSON array of answers recorded by tests/e2e/test_openapi.py:
//   {"id": N, "path": "/v1/plugins/{name}/suspend", "method": "post", "status": 200,
//    "content_type": "application/json", "headers": {"retry-after": "1", ...},
//    "body": "<the body as UTF-8 text>",
//    "request": {"content_type": "application/json", "body": "..."}}   (optional)
// For each answer the operation (path, method) and its response for the status must be
// documented; the Content-Type must be one the response documents; the body must validate
// against that media type's schema (JSON Schema 2020-12, with Ajv in strict mode, $refs
// resolved against the document's components); each documented header must be present when
// required and validate when present.  With "request", the request body the daemon accepted
// is validated against the operation's requestBody too.
//
// Prints one JSON object on stdout:
//   {"operations": [{"path", "method", "status", "not_testable"}...],  every documented
//                                                    response; not_testable is the reason of
//                                                    its x-not-testable, or null
//    "results": [{"id", "errors": ["..."]}...]}     one per answer, in input order
// Exit status: 0 when the document and every answer are valid, 1 when some answer is not,
// 2 when the document itself cannot be used (the reason on stderr).
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const COMPONENTS_ID = 'https://madoguchi.invalid/openapi/components';
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function fail(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

// A local JSON pointer ("#/components/responses/X") inside the document.
function resolvePointer(doc, ref) {
  if (!ref.startsWith('#/')) fail(`only local $refs are supported, not ${ref}`);
  let node = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !(key in node)) fail(`unresolved $ref ${ref}`);
    node = node[key];
  }
  return node;
}

// An OpenAPI object (response, parameter, header) that may be a $ref to components.
function deref(doc, obj) {
  let seen = 0;
  while (obj && typeof obj === 'object' && typeof obj.$ref === 'string') {
    if (++seen > 16) fail(`$ref loop at ${obj.$ref}`);
    obj = resolvePointer(doc, obj.$ref);
  }
  return obj;
}

// A copy of a schema whose "#/components/schemas/X" refs point into the components schema
// registered with Ajv.
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string') {
      if (!v.startsWith('#/components/schemas/')) fail(`a schema $ref must name #/components/schemas/…, not ${v}`);
      out[k] = `${COMPONENTS_ID}#/$defs/${v.slice('#/components/schemas/'.length)}`;
    } else {
      out[k] = rewriteRefs(v);
    }
  }
  return out;
}

function normalizeMediaType(s) {
  return String(s).toLowerCase().split(';').map((p) => p.trim()).filter((p) => p).join('; ');
}

// The documented media type (key of content) for a Content-Type header, or null.
function pickMediaType(content, contentType) {
  const have = normalizeMediaType(contentType);
  const keys = Object.keys(content || {});
  for (const k of keys) if (normalizeMediaType(k) === have) return k;
  // A documented type without parameters accepts the same type with any parameters.
  const base = have.split(';')[0];
  for (const k of keys) if (!k.includes(';') && normalizeMediaType(k) === base) return k;
  return null;
}

function isJson(mediaType) {
  const base = normalizeMediaType(mediaType).split(';')[0];
  return base === 'application/json' || base.endsWith('+json');
}

function errorsOf(validate, prefix) {
  return (validate.errors || []).slice(0, 8).map((e) => {
    const where = e.instancePath || '(root)';
    const params = e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : '';
    return `${prefix}${where} ${e.message}${params} [${e.schemaPath}]`;
  });
}

const [specPath, answersPath] = process.argv.slice(2);
if (!specPath || !answersPath) fail('usage: node validate.mjs SPEC.yaml ANSWERS.json');

let spec;
try {
  spec = YAML.parse(readFileSync(specPath, 'utf8'));
} catch (e) {
  fail(`cannot read ${specPath}: ${e.message}`);
}
if (!spec || typeof spec.openapi !== 'string' || !spec.openapi.startsWith('3.1.')) {
  fail(`${specPath} is not an OpenAPI 3.1 document`);
}

// Strict: an unknown keyword (a typo in the document) is an error.  strictTypes is off: the
// problem schemas narrow a shared base with allOf branches that need not repeat its type.
const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
try {
  ajv.addSchema({ $id: COMPONENTS_ID, $defs: rewriteRefs(spec.components?.schemas || {}) });
} catch (e) {
  fail(`components.schemas: ${e.message}`);
}

const compiled = new Map();
function compile(schema, where) {
  const key = JSON.stringify(schema);
  if (!compiled.has(key)) {
    try {
      compiled.set(key, ajv.compile(rewriteRefs(schema)));
    } catch (e) {
      fail(`${where}: the schema does not compile: ${e.message}`);
    }
  }
  return compiled.get(key);
}

// Every documented response, each schema compiled up front (a broken schema fails the run
// even where no answer reaches it).
const operations = [];
for (const [path, item] of Object.entries(spec.paths || {})) {
  for (const method of METHODS) {
    const op = item[method];
    if (!op) continue;
    for (const [status, raw] of Object.entries(op.responses || {})) {
      const resp = deref(spec, raw);
      const where = `${method.toUpperCase()} ${path} ${status}`;
      for (const [mt, media] of Object.entries(resp.content || {})) {
        if (!media.schema) fail(`${where} ${mt}: no schema`);
        compile(media.schema, `${where} ${mt}`);
      }
      for (const [name, h] of Object.entries(resp.headers || {})) {
        const header = deref(spec, h);
        if (!header.schema) fail(`${where} header ${name}: no schema`);
        compile(header.schema, `${where} header ${name}`);
      }
      const nt = raw['x-not-testable'] ?? resp['x-not-testable'];
      operations.push({ path, method, status, not_testable: nt === undefined ? null : String(nt) });
    }
  }
}

function checkHeaders(resp, answer, errors) {
  const have = {};
  for (const [k, v] of Object.entries(answer.headers || {})) have[k.toLowerCase()] = v;
  for (const [name, h] of Object.entries(resp.headers || {})) {
    const header = deref(spec, h);
    const value = have[name.toLowerCase()];
    if (value === undefined) {
      if (header.required) errors.push(`header ${name}: required but absent`);
      continue;
    }
    const type = header.schema.type;
    let v = value;
    if (type === 'integer' || type === 'number') {
      if (!/^-?[0-9]+(\.[0-9]+)?$/.test(value)) {
        errors.push(`header ${name}: ${JSON.stringify(value)} is not a number`);
        continue;
      }
      v = Number(value);
    }
    const validate = compile(header.schema, `header ${name}`);
    if (!validate(v)) errors.push(...errorsOf(validate, `header ${name}: `));
  }
}

function checkBody(content, contentType, body, errors, prefix) {
  const mt = pickMediaType(content, contentType);
  if (mt === null) {
    errors.push(`${prefix}Content-Type ${JSON.stringify(contentType)} is not documented (${Object.keys(content || {}).join(', ') || 'no content'})`);
    return;
  }
  let value = body;
  if (isJson(mt)) {
    try {
      value = JSON.parse(body);
    } catch (e) {
      errors.push(`${prefix}the body is not JSON: ${e.message}`);
      return;
    }
  }
  const validate = compile(content[mt].schema, `${prefix}${mt}`);
  if (!validate(value)) errors.push(...errorsOf(validate, `${prefix}body`));
}

let answers;
try {
  answers = JSON.parse(readFileSync(answersPath === '-' ? 0 : answersPath, 'utf8'));
} catch (e) {
  fail(`cannot read ${answersPath}: ${e.message}`);
}

const results = [];
let bad = 0;
for (const a of answers) {
  const errors = [];
  const item = spec.paths?.[a.path];
  const op = item?.[a.method];
  const raw = op?.responses?.[String(a.status)];
  if (!op) {
    errors.push(`${a.method.toUpperCase()} ${a.path} is not documented`);
  } else if (!raw) {
    errors.push(`status ${a.status} is not documented for ${a.method.toUpperCase()} ${a.path} (documented: ${Object.keys(op.responses).join(', ')})`);
  } else {
    const resp = deref(spec, raw);
    checkHeaders(resp, a, errors);
    if (resp.content) {
      checkBody(resp.content, a.content_type || '', a.body ?? '', errors, '');
    } else if ((a.body ?? '') !== '') {
      errors.push('a body where none is documented');
    }
    if (a.request) {
      const rb = deref(spec, op.requestBody);
      if (!rb) errors.push('request: the operation documents no request body');
      else checkBody(rb.content, a.request.content_type || '', a.request.body ?? '', errors, 'request: ');
    }
  }
  if (errors.length) bad++;
  results.push({ id: a.id, errors });
}

process.stdout.write(JSON.stringify({ operations, results }) + '\n');
process.exit(bad ? 1 : 0);
