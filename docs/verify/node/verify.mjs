// Verify the cases written by docs/verify/make_fixture.py: `v1` (HMAC) with the
// `standardwebhooks` npm package, `v1a` (Ed25519) with node:crypto.
// Usage: node verify.mjs cases.json   (exit status 1 if any case differs)
import { createPublicKey, verify as cryptoVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

// Ed25519 (`v1a`) verification; the `standardwebhooks` package checks `v1` entries only.
// `body` is the raw request body (Buffer or string), `headers` a plain object.
export function verifyV1a(publicKey, body, headers, toleranceSeconds = 300) {
  const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const id = h["webhook-id"];
  const timestamp = h["webhook-timestamp"];
  const signatures = h["webhook-signature"];
  if (!id || !timestamp || !signatures) throw new Error("Missing required headers");
  if (!/^[0-9]+$/.test(timestamp)) throw new Error("Invalid timestamp");
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) {
    throw new Error("Message timestamp outside the tolerance");
  }
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`, "utf8"), payload]);
  for (const entry of signatures.split(" ")) {
    const [version, signature] = entry.split(",");
    if (version !== "v1a" || !signature) continue;
    if (cryptoVerify(null, signed, key, Buffer.from(signature, "base64"))) {
      return JSON.parse(payload.toString("utf8"));
    }
  }
  throw new Error("No matching signature found");
}

const { cases } = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failures = 0;
for (const { name, expect, secret, public_key, body, headers } of cases) {
  let outcome;
  try {
    const payload = secret
      ? new Webhook(secret).verify(body, headers)
      : verifyV1a(public_key, Buffer.from(body, "utf8"), headers);
    outcome = payload.hook === "book.added" ? "ok" : "wrong payload";
  } catch (err) {
    outcome = `reject (${err.message})`;
  }
  const pass = outcome.split(" ")[0] === expect;
  failures += pass ? 0 : 1;
  console.log(`${pass ? "PASS" : "FAIL"}  ${name}: ${outcome}`);
}
process.exit(failures ? 1 : 0);
