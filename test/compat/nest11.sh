#!/usr/bin/env bash
# Nest 11 compatibility smoke test (needs the npm registry): packs this library, installs it with
# plain `npm install` next to @nestjs/*@11 and @nestjs/schedule@6 in a temporary CommonJS app,
# type-checks test/compat/nest11-consumer.ts (strict, skipLibCheck: false) and runs
# test/compat/nest11-smoke.cjs, a CommonJS consumer (login, read, logout over real HTTP). Not part of
# `npm test`, because it installs from the registry. Usage: bash test/compat/nest11.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pkg" "$WORK/app"
node "$ROOT/node_modules/typescript/bin/tsc" -p "$ROOT/tsconfig.build.json" --outDir "$WORK/pkg/dist" --sourceMap false
cp "$ROOT/package.json" "$ROOT/README.md" "$WORK/pkg/"
(cd "$WORK/pkg" && npm pack --ignore-scripts --silent --pack-destination "$WORK" >/dev/null)
cd "$WORK/app"
echo '{ "name": "compat-nest11", "private": true, "type": "module" }' > package.json
npm install --no-audit --no-fund --silent @nestjs/common@11 @nestjs/core@11 @nestjs/platform-express@11 \
  @nestjs/schedule@6 reflect-metadata rxjs @types/node@20 "$WORK"/nest-session-*.tgz
mkdir -p src
cp "$ROOT/test/compat/nest11-consumer.ts" src/app.ts
cat > tsconfig.json <<'JSON'
{ "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["ES2023"],
  "strict": true, "skipLibCheck": false, "noEmit": true, "experimentalDecorators": true, "emitDecoratorMetadata": true,
  "types": ["node"] }, "include": ["src"] }
JSON
node "$ROOT/node_modules/typescript/bin/tsc" -p .
echo "Nest 11 consumer type-checks (strict, skipLibCheck: false)"
cp "$ROOT/test/compat/nest11-smoke.cjs" .
node nest11-smoke.cjs | tee result.json
grep -q '"me":{"started":true,"user":"alice"}' result.json
grep -q '"cleared":true' result.json
grep -q '"after":{"started":false,"user":null}' result.json
echo "Nest 11 smoke test passed"
