// Builds the dashboard into dist/ (index.html, app.js, app.css), which the Rust binary
// embeds at compile time. The output is committed; CI rebuilds it and fails on a difference.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

await mkdir("dist", { recursive: true });
await build({
  entryPoints: { app: "src/main.tsx" },
  outdir: "dist",
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
await copyFile("index.html", "dist/index.html");
