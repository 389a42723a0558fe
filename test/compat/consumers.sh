#!/usr/bin/env bash
# Fresh consumer apps on the packed library (needs the npm registry and Redis at REDIS_URL,
# default redis://127.0.0.1:6379). Packs this library, then for each of {Nest 11, Nest 12} x
# {ioredis, redis@latest} creates an app in its own temporary directory, installs the tarball,
# the Express adapter and the client with a plain `npm install` (no flags), checks that no other
# Redis client and none of the other optional peers got installed, type-checks
# consumer-app.ts, consumer-contract.test.ts and the client file (strict, skipLibCheck: false),
# and runs the contract over HTTP on Redis with `node --test`; the Nest 11 apps also run
# consumer-smoke.cjs, a CommonJS consumer loading this ESM package (require(esm), Node 20).
# The four run in parallel; the script fails if any fails. Not part of `npm test` (it installs
# from the registry); .ci/run runs it after the tests. Usage: bash test/compat/consumers.sh
# [combo...] with combos nest11-ioredis, nest11-node-redis, nest12-ioredis, nest12-node-redis.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
COMPAT="$ROOT/test/compat"
TSC="$ROOT/node_modules/typescript/bin/tsc"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
COMBOS=("$@")
[ ${#COMBOS[@]} -gt 0 ] || COMBOS=(nest11-ioredis nest11-node-redis nest12-ioredis nest12-node-redis)
started=$SECONDS

# The library only (tsconfig.build.json also builds the sample app), into dist/lib as published.
mkdir -p "$WORK/pkg"
cat >"$WORK/tsconfig.json" <<JSON
{ "extends": "$ROOT/tsconfig.build.json", "compilerOptions": { "typeRoots": ["$ROOT/node_modules/@types"] },
  "include": ["$ROOT/lib"], "exclude": ["$ROOT/lib/**/*.spec.ts"] }
JSON
node "$TSC" -p "$WORK/tsconfig.json" --outDir "$WORK/pkg/dist" --sourceMap false
cp "$ROOT/package.json" "$ROOT/README.md" "$WORK/pkg/"
TARBALL="$WORK/$(cd "$WORK/pkg" && npm pack --ignore-scripts --silent --pack-destination "$WORK")"
echo "packed $(basename "$TARBALL") in $((SECONDS - started)) s"

# The optional peers a consumer of the core and 'nest-session/redis' must not need.
OTHER_PEERS=(pg cache-manager @nestjs/terminus @opentelemetry/api nest-commander)

combo() {
  local name="$1" dir="$WORK/$1" nest client
  nest="${name%%-*}"
  client="${name#*-}"
  mkdir -p "$dir/src"
  cd "$dir"
  echo "{ \"name\": \"compat-$name\", \"private\": true, \"type\": \"module\" }" >package.json
  local packages=(reflect-metadata rxjs @types/node@20 "$TARBALL")
  case "$nest" in
    nest11) packages+=(@nestjs/common@11 @nestjs/core@11 @nestjs/platform-express@11 @nestjs/schedule@6) ;;
    nest12) packages+=(@nestjs/common@12 @nestjs/core@12 @nestjs/platform-express@12 @nestjs/schedule@12) ;;
    *) echo "unknown combo $name" >&2; return 1 ;;
  esac
  local absent=("${OTHER_PEERS[@]}")
  case "$client" in
    # Plain `ioredis`: the peer range (^5 || ^6) lets npm pick the latest 6.x. ioredis 6.1's own
    # declarations import `redis-errors`, which ships no types: with skipLibCheck: false an app
    # needs @types/redis-errors (ioredis' problem, not ours; README "Redis clients").
    ioredis) packages+=(ioredis @types/redis-errors); absent+=(redis @redis/client) ;;
    node-redis) packages+=(redis@latest); absent+=(ioredis) ;;
    *) echo "unknown combo $name" >&2; return 1 ;;
  esac
  local t0=$SECONDS begun=$SECONDS
  echo "npm install ${packages[*]/#$WORK\//}"
  npm install "${packages[@]}" >install.log 2>&1 || { cat install.log; return 1; }
  echo "installed in $((SECONDS - t0)) s: $(node -e '
    const pick = (n) => { try { return n + "@" + require(process.cwd() + "/node_modules/" + n + "/package.json").version; } catch { return null; } };
    console.log(["nest-session", "@nestjs/core", "@nestjs/platform-express", "@nestjs/schedule", "ioredis", "redis", "@redis/client", "rxjs", "reflect-metadata", "@types/node"].map(pick).filter(Boolean).join(" "));')"
  if grep -q EBADENGINE install.log; then
    echo "engine warnings:"
    grep -E "EBADENGINE +(package|required):" install.log | sed -E 's/^npm warn EBADENGINE +/  /' | paste -d ' ' - - || true
  else
    echo "engine warnings: none"
  fi
  grep -E "npm (warn|error)" install.log | grep -v EBADENGINE | sed 's/^/  /' || true
  for pkg in "${absent[@]}"; do
    if [ -e "node_modules/$pkg" ]; then echo "$pkg is installed but must not be" >&2; return 1; fi
  done

  cp "$COMPAT/consumer-app.ts" "$COMPAT/consumer-contract.test.ts" src/
  if [ "$client" = ioredis ]; then cp "$COMPAT/consumer-redis.ts" src/consumer-redis.ts; else cp "$COMPAT/consumer-node-redis.ts" src/consumer-redis.ts; fi
  cat >tsconfig.json <<'JSON'
{ "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["ES2023"],
  "strict": true, "skipLibCheck": false, "experimentalDecorators": true, "emitDecoratorMetadata": true,
  "types": ["node"], "rootDir": "src", "outDir": "dist" }, "include": ["src"] }
JSON
  t0=$SECONDS
  node "$TSC" -p .
  echo "type-checks (strict, skipLibCheck: false) without ${absent[*]} ($((SECONDS - t0)) s)"
  CONSUMER_PREFIX="compat:$name:$$:" node --test --test-reporter=spec dist/consumer-contract.test.js
  if [ "$nest" = nest11 ]; then
    cp "$COMPAT/consumer-smoke.cjs" .
    REDIS_CLIENT="$client" CONSUMER_PREFIX="compat:$name:$$:" node consumer-smoke.cjs | tee smoke.json
    grep -q '"me":{"started":true,"user":"alice","n":1}' smoke.json
    grep -q '"cleared":true' smoke.json
    grep -q '"after":{"started":false,"user":null,"n":null}' smoke.json
    grep -Eq '"inRedis":[1-9]' smoke.json
    echo "CommonJS consumer (require(esm)) passed"
  fi
  echo "$name passed in $((SECONDS - begun)) s"
}

pids=()
for name in "${COMBOS[@]}"; do
  (set -euo pipefail; combo "$name") >"$WORK/$name.out" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!COMBOS[@]}"; do
  if ! wait "${pids[$i]}"; then failed+=("${COMBOS[$i]}"); fi
done
for name in "${COMBOS[@]}"; do
  echo "=== $name"
  cat "$WORK/$name.out"
done
echo "=== ${#COMBOS[@]} consumers in $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all passed"
