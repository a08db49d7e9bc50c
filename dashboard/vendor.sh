#!/bin/sh
# Copies the dashboard's front-end libraries from node_modules (installed
# with `npm ci` from package-lock.json) into the node's embedded assets.
# The copies are committed, so `cargo build` needs no npm; rerun this after
# changing a version in package.json, and commit both.
set -eu
cd "$(dirname "$0")"
out=../crates/shoal-node/src/http/dashboard/vendor
mkdir -p "$out"
cp node_modules/htm/preact/standalone.module.js "$out/htm-preact.js"
cp node_modules/htm/LICENSE "$out/htm-LICENSE"
cp node_modules/uplot/dist/uPlot.iife.min.js "$out/uPlot.js"
cp node_modules/uplot/dist/uPlot.min.css "$out/uPlot.css"
cp node_modules/uplot/LICENSE "$out/uPlot-LICENSE"
echo "vendored into $out:"
ls -l "$out"
