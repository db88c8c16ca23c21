// Strict validation of liveprobe's schemas and answers, as strict clients do
// it: `node check.mjs FILE` where FILE holds
//   {"schemas": {"<tool>.<input|output>": schema, ...},
//    "instances": [{"schema": "<tool>.output", "data": {...}}, ...]}
// Every schema must compile under Ajv (draft 2020-12) with strict: true and
// only the standard formats; every instance must validate against its schema.
// Prints one line per problem and exits 1 when there is any.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const compiled = {};
for (const [name, schema] of Object.entries(input.schemas)) {
  // One Ajv per schema: each carries its own $defs and no $id.
  const ajv = new Ajv2020({ strict: true, allErrors: true, validateFormats: true });
  addFormats(ajv);
  try {
    compiled[name] = ajv.compile(schema);
  } catch (e) {
    problems.push(`${name}: does not compile strictly: ${e.message}`);
  }
}
for (const { schema, data } of input.instances ?? []) {
  const validate = compiled[schema];
  if (!validate) {
    problems.push(`${schema}: no compiled schema for an instance`);
    continue;
  }
  if (!validate(data)) {
    problems.push(`${schema}: answer does not match: ${JSON.stringify(validate.errors).slice(0, 600)}`);
  }
}
for (const p of problems) console.log(p);
console.log(`checked ${Object.keys(input.schemas).length} schema(s), ${(input.instances ?? []).length} answer(s), ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
