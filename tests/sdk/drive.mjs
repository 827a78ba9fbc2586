// Drives the real @xylex-group/athena SDK against a running gateway and prints what it saw as
// JSON, for tests/sdk/test_sdk.py to assert on. Usage: node drive.mjs <baseUrl> <apiKey> <owner>
import { createClient } from "@xylex-group/athena";

const [baseUrl, apiKey, owner] = process.argv.slice(2);
const db = createClient(baseUrl, apiKey, {
  client: "athena",
  userId: "sdk-user",
  companyId: "sdk-company",
  organizationId: "sdk-org",
});
const table = "gw_sdk_items";
const out = {};

out.insert = await db
  .from(table)
  .insert([
    { owner, name: "alpha", qty: 1, note: "first", labels: ["x", "y"] },
    { owner, name: "beta", qty: 5, attrs: { size: "L" } },
    { owner, name: "gamma", qty: 9 },
  ])
  .select();

out.filtered = await db.from(table).eq("owner", owner).gt("qty", 1).lte("qty", 9).select("name,qty");
out.inList = await db.from(table).eq("owner", owner).in("name", ["alpha", "gamma"]).select("name");
out.orExpr = await db.from(table).eq("owner", owner).or("qty.eq.1,name.eq.gamma").select("name");
out.notNull = await db.from(table).eq("owner", owner).not("note", "is", null).select("name,note");
out.contains = await db.from(table).eq("owner", owner).contains("labels", ["x"]).select("name");
out.likeRange = await db.from(table).eq("owner", owner).ilike("name", "%A%").range(0, 0).select("name");
out.single = await db.from(table).eq("owner", owner).eq("name", "beta").single("name,attrs");

out.update = await db.from(table).eq("owner", owner).eq("name", "alpha").update({ qty: 42, note: null }).select("name,qty,note");
out.upsert = await db
  .from(table)
  .upsert({ owner, name: "beta", qty: 0 }, { onConflict: "owner,name", updateBody: { qty: 77 } })
  .select("name,qty");

const gammaId = out.insert.data.data.find((row) => row.name === "gamma").id;
out.deleteById = await db.from(table).eq("id", gammaId).delete().select("name");
out.afterDelete = await db.from(table).eq("owner", owner).select("name,qty");
out.denied = await createClient(baseUrl, "ath_0000000000000000.nope", { client: "athena" })
  .from(table)
  .select();

process.stdout.write(JSON.stringify(out));
