// Drives a build of @xylex-group/athena 5.x against a running gateway with the documented
// createClient({ url, key, client }) and records every HTTP exchange it makes, step by step, as
// JSON on stdout (scripts/sdk5_record.py writes it to tests/sdk/sdk5_wire.json).
// Usage: node --conditions=react-server sdk5_record.mjs <sdk dist dir> <url> <data key> <admin key>
const [dist, url, key, adminKey] = process.argv.slice(2);
const { createClient } = await import(`${dist}/index.js`);

const exchanges = [];
let step = "setup";
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const request = new Request(input, init);
  const body = typeof init.body === "string" ? init.body : null;
  const response = await realFetch(input, init);
  const text = await response.clone().text();
  const target = new URL(request.url);
  const headers = Object.fromEntries(request.headers.entries());
  for (const name of ["x-athena-key", "apikey", "x-api-key", "authorization"]) {
    if (headers[name] === key) headers[name] = "<data key>";
    if (headers[name] === adminKey) headers[name] = "<admin key>";
  }
  exchanges.push({
    step,
    method: request.method,
    path: target.pathname + target.search,
    headers,
    body,
    status: response.status,
    response: text,
  });
  return response;
};

const athena = createClient({ url, key, client: "athena" });
const ast = createClient({ url, key, client: "athena", findManyAst: true });
const admin = createClient({ url, key: adminKey, client: "athena" });
const T = "sdk5_wire";
const seen = {};

async function run(name, fn) {
  step = name;
  try {
    const result = await fn();
    seen[name] = {
      data: result?.data ?? result ?? null,
      count: result?.count ?? null,
      error: result?.error ? { code: result.error.code, status: result.error.status ?? null } : null,
    };
  } catch (error) {
    seen[name] = { thrown: String(error?.message ?? error), code: error?.code ?? null };
  }
}

await run("insert", () => athena.from(T).insert([{ owner: "sdk", name: "one", qty: 2 }, { owner: "sdk", name: "two", qty: 7, note: "n" }]).select());
await run("select_filters", () => athena.from(T).select("name,qty").eq("owner", "seed").gt("qty", 1).lte("qty", 12).order("qty", { ascending: false }).limit(10));
await run("select_in_or", () => athena.from(T).select("name").in("name", ["alpha", "delta"]).or("qty.eq.1,qty.eq.12").order("name"));
await run("select_range", () => athena.from(T).select("name").eq("owner", "seed").order("qty").range(1, 2));
await run("alias", () => athena.from(T).select("label:name,qty").eq("owner", "seed").order("qty").limit(2));
await run("count_exact", () => athena.from(T).select("*", { count: "exact" }).eq("owner", "seed").limit(1));
await run("count_head", () => athena.from(T).select("*", { count: "exact", head: true }).eq("owner", "seed"));
await run("find_many", () => athena.from(T).findMany({ select: { name: true, qty: true }, where: { owner: "seed", qty: { gte: 5 } }, orderBy: { qty: "desc" }, limit: 5 }));
await run("find_many_ast", () => ast.from(T).findMany({ select: { name: true }, where: { owner: "seed", or: [{ qty: { gte: 9 } }, { name: "alpha" }] }, orderBy: { name: "asc" } }));
await run("single", () => athena.from(T).select("name,note").eq("name", "alpha").single());
await run("maybe_single_none", () => athena.from(T).select("name").eq("name", "nobody").maybeSingle());
await run("update", () => athena.from(T).update({ qty: 3 }).eq("owner", "sdk").eq("name", "one").select("name,qty"));
await run("upsert", () => athena.from(T).upsert({ owner: "sdk", name: "two", qty: 70 }, { onConflict: "owner,name" }).select("name,qty"));
await run("delete", () => athena.from(T).delete({ resourceId: "5" }).select("name"));
await run("raw_sql_params", () => athena.admin.query({ sql: `SELECT name FROM ${T} WHERE owner = $1 AND qty > $2 ORDER BY qty`, params: ["seed", 4], operation: "select", expectedShape: "rows" }));
await run("rpc_scalar", () => athena.rpc("sdk5_wire_add", { a: 20, b: 22 }));
await run("rpc_set", () => athena.rpc("sdk5_wire_by_owner", { who: "seed" }));
await run("transaction", () => athena.db.transaction([athena.from(T).insert({ owner: "tx", name: "t1", qty: 1 }), athena.from(T).select("name").eq("owner", "tx")]));
await run("transaction_rollback", () => athena.db.transaction([athena.from(T).insert({ owner: "tx", name: "t2" }), athena.from(T).insert({ owner: "tx", name: "t1" })]));
await run("compatibility", () => athena.system.compatibility());
await run("backup_jobs", () => admin.storage.backup.jobs.list({ limit: 5 }));
await run("backup_create_without_s3", () => admin.storage.backup.create({ client_name: "athena", label: "wire" }));
await run("storage_catalogs", () => admin.storage.listStorageCatalogs());
await run("error_unknown_table", () => admin.from("no_such_table").select("*"));
await run("error_rights", () => athena.from("sdk5_secret").select("*"));

console.log(JSON.stringify({ sdk: "@xylex-group/athena 5.2.0", seen, exchanges }, null, 1));
