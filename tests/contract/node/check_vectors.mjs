// Checks contract_hash.mjs (written from docs/CONTRACT.md alone) against the test vectors:
//   node tests/contract/node/check_vectors.mjs [tests/contract/vectors.json]
// Prints one line per mismatch and a summary; exits 1 when anything differs.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  ENCODING_VERSION, canonicalEncoding, configHash, doubleText, jobHash,
} from "./contract_hash.mjs";

const defaultPath = fileURLToPath(new URL("../vectors.json", import.meta.url));
const vectors = JSON.parse(readFileSync(process.argv[2] ?? defaultPath, "utf8"));
const failures = [];

function expectEqual(what, actual, expected) {
  if (actual !== expected) failures.push(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
}

expectEqual("encoding_version", ENCODING_VERSION, vectors.encoding_version);

const hashes = new Map();
for (const vector of vectors.jobs) {
  const hash = configHash(vector.job);
  hashes.set(vector.name, hash);
  expectEqual(`job ${vector.name}: canonical encoding`, canonicalEncoding(vector.job), vector.canonical);
  expectEqual(`job ${vector.name}: config_hash`, hash, vector.config_hash);
}

for (const bundle of vectors.bundles) {
  const entryHashes = bundle.entries.map((name) => hashes.get(name));
  expectEqual(`bundle ${bundle.name}: entry hashes`, entryHashes.join(","), bundle.entry_hashes.join(","));
  expectEqual(`bundle ${bundle.name}: job hash`, jobHash(entryHashes), bundle.bundle_hash);
}

for (const { bits, text } of vectors.floats) {
  expectEqual(`double ${bits}`, doubleText(Buffer.from(bits, "hex").readDoubleBE(0)), text);
}

for (const failure of failures) console.log(failure);
const summary = `${vectors.jobs.length} jobs, ${vectors.bundles.length} bundles, ${vectors.floats.length} doubles`;
if (failures.length > 0) {
  console.log(`FAILED: ${failures.length} mismatches in ${summary}`);
  process.exit(1);
}
console.log(`ok: ${summary}`);
