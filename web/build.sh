#!/bin/sh
# Vendors the studio page's browser libraries into src/cadenza/server/static/vendor/.
# Run from anywhere: sh web/build.sh. Needs node + npm only here (the output is committed, so
# installing or running cadenza never touches npm or the internet).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../src/cadenza/server/static/vendor"
cd "$here"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --ignore-scripts; else npm install --no-audit --no-fund --ignore-scripts; fi
mkdir -p "$out"
# Tone.js: the UMD build (defines window.Tone). Its source-map comment is dropped (the map is not shipped).
sed '/^\/\/# sourceMappingURL=/d' node_modules/tone/build/Tone.js > "$out/Tone.js"
version=$(node -p "require('./node_modules/tone/package.json').version")
{
  echo "Tone.js $version (https://github.com/Tonejs/Tone.js), vendored from npm by web/build.sh."
  echo "build/Tone.js bundles standardized-audio-context, automation-events, tslib and @babel/runtime;"
  echo "their licenses follow Tone.js's own."
  for f in tone/LICENSE.md standardized-audio-context/LICENSE automation-events/LICENSE tslib/LICENSE.txt @babel/runtime/LICENSE; do
    echo; echo "==== node_modules/$f ===="; cat "node_modules/$f"
  done
} > "$out/Tone.LICENSE.txt"
ls -l "$out"
