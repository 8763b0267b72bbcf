#!/usr/bin/env bash
# Puts the admin UI's npm packages where the admin serves them (src/rock/admin/ui/static/vendor/).
# No bundler: the pages are rendered by the admin, and these packages ship browser-ready files.
# Skips everything when package-lock.json and this script are unchanged since the last copy.
set -euo pipefail
web=$(cd "$(dirname "$0")" && pwd)
dest="$web/../src/rock/admin/ui/static/vendor"
stamp="$dest/.stamp"
want=$(cat "$web/package-lock.json" "$web/build.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
cd "$web"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
rm -rf "$dest"
mkdir -p "$dest"
cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css \
   node_modules/@xterm/addon-fit/lib/addon-fit.js node_modules/@picocss/pico/css/pico.min.css "$dest/"
echo "$want" >"$stamp"
echo "built the admin UI assets into $dest"
