// Dubbo2 consumer for integration tests, built on apache-dubbo-js (DirectlyDubbo + hessian.js).
//
//   node dubbo_call.js '<json spec>'
//
// spec: {"host": "127.0.0.1", "port": 20880, "interface": "org.example.Echo",
//        "version": "1.0.0", "dubboVersion": "2.0.2", "timeout": 5, "concurrent": false,
//        "calls": [{"method": "sayHello", "args": ["x"], "attachments": {"k": "v"}}]}
// Arguments are plain JSON (string -> java.lang.String, integer -> int, float -> double,
// bool -> java.lang.Boolean, array -> java.util.ArrayList, object -> java.util.HashMap) or
// already-typed hessian.js values {"$class": "...", "$": ...}.
// "concurrent": true sends every call at once on the one connection (pipelined).
//
// Prints one JSON line: {"results": [{"ok": true, "value": ..., "attachments": {...}} |
// {"ok": false, "error": "...", "name": "..."}]} and exits 1 if any call failed, 2 on a bad
// spec or when the overall deadline passes.
'use strict';

const path = require('path');
const modules = process.env.DUBBO_JS_NODE_MODULES || path.join(__dirname, 'node_modules');
const req = (name) => require(require.resolve(name, { paths: [modules] }));
const { DirectlyDubbo } = req('apache-dubbo-js');
const decodeModule = req('apache-dubbo-js/es7/decode');

function emit(obj, code) {
  process.stdout.write(JSON.stringify(safeJson(obj)) + '\n', () => process.exit(code));
}

function toJava(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'object' && !Array.isArray(v) && '$class' in v) return v;
  if (typeof v === 'string') return { $class: 'java.lang.String', $: v };
  if (typeof v === 'boolean') return { $class: 'java.lang.Boolean', $: v };
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return { $class: 'double', $: v };
    if (v >= -2147483648 && v <= 2147483647) return { $class: 'int', $: v };
    return { $class: 'long', $: v };
  }
  if (Array.isArray(v)) return { $class: 'java.util.ArrayList', $: v.map(toJava) };
  const m = {};
  for (const [k, x] of Object.entries(v)) m[k] = toJava(x);
  return { $class: 'java.util.HashMap', $: m };
}

// DirectlyDubbo drops provider attachments; keep them by request id from the decoder.
const providerAttachments = new Map();
const originalDecode = decodeModule.decode;
decodeModule.decode = (bytes) => {
  const out = originalDecode(bytes);
  if (out && out.requestId !== undefined) providerAttachments.set(out.requestId, out.attachments);
  return out;
};

function safeJson(v) {
  const seen = new WeakSet();
  return JSON.parse(
    JSON.stringify(v, (k, x) => {
      if (typeof x === 'bigint') return x.toString();
      if (x && typeof x === 'object') {
        if (seen.has(x)) return undefined;
        seen.add(x);
      }
      return x;
    }),
  );
}

// An exception response decodes to an Error (hessian.js maps Java throwables) or to a
// DubboDecodeError wrapping the decoded object; a non-OK status carries the provider's text.
function describe(err) {
  let inner = err && typeof err === 'object' && 'message' in err ? err.message : err;
  let name = (err && err.name) || 'Error';
  if (inner && typeof inner === 'object') {
    name = inner.name || name;
    inner = inner.detailMessage || inner.message || JSON.stringify(safeJson(inner));
  }
  return { ok: false, error: String(inner), name };
}

async function main() {
  let spec;
  try {
    spec = JSON.parse(process.argv[2]);
  } catch (e) {
    emit({ fatal: `bad spec: ${e.message}` }, 2);
    return;
  }
  const timeout = spec.timeout || 5;
  setTimeout(() => emit({ fatal: `deadline of ${timeout + 5}s passed` }, 2), (timeout + 5) * 1000).unref();

  const dubbo = DirectlyDubbo.from({
    dubboAddress: `${spec.host}:${spec.port}`,
    dubboVersion: spec.dubboVersion || '2.0.2',
    dubboInvokeTimeout: timeout,
  });
  // Inject per-call attachments: DirectlyDubbo has no middleware hook, so wrap its queue.
  let pending = [];
  const addQueue = dubbo.addQueue.bind(dubbo);
  dubbo.addQueue = (ctx) => {
    const extra = pending.shift();
    if (extra) ctx.attachments = extra.attachments;
    if (extra) extra.onRequestId(ctx.requestId);
    addQueue(ctx);
  };

  const methods = {};
  for (const call of spec.calls) methods[call.method] = (...args) => args;
  const svc = dubbo.proxyService({
    dubboInterface: spec.interface,
    version: spec.version || '1.0.0',
    group: spec.group,
    methods,
  });

  const invoke = (call) => {
    let requestId;
    pending.push({ attachments: call.attachments || {}, onRequestId: (id) => (requestId = id) });
    // go() resolves to {res, err} instead of rejecting.
    return svc[call.method](...(call.args || []).map(toJava)).then(
      ({ res, err }) =>
        err
          ? describe(err)
          : { ok: true, value: res, attachments: providerAttachments.get(requestId) || {} },
      (err) => describe(err),
    );
  };

  let results;
  if (spec.concurrent) {
    results = await Promise.all(spec.calls.map(invoke));
  } else {
    results = [];
    for (const call of spec.calls) results.push(await invoke(call));
  }
  emit({ results }, results.every((r) => r.ok) ? 0 : 1);
}

main().catch((e) => emit({ fatal: String((e && e.stack) || e) }, 2));
