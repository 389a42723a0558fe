/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) of a bench app: where the busy time went,
 * by file or package, and our own functions (lib/) by self and inclusive time, with their
 * TypeScript file and line (through the source maps in dist-bench).
 *
 *   node dist-bench/bench/profile-summary.js .bench-out/profiles/CPU.....cpuprofile [top] [requests]
 *
 * With the number of requests the app served, times are also given in µs per request (the
 * profile covers the whole process, start-up included, so these are slight overestimates).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const maps = new Map<string, SourceMap | null>();

function sourceMapOf(file: string): SourceMap | null {
  let map = maps.get(file);
  if (map === undefined) {
    const mapFile = `${file}.map`;
    map = existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8')) as SourceMapPayload) : null;
    maps.set(file, map);
  }
  return map;
}

/** Where a frame lives: its group (file of ours, package, node internals) and a readable location. */
function locate(frame: CallFrame): { group: string; where: string; ours: boolean } {
  const url = frame.url;
  if (url === '') return { group: frame.functionName.startsWith('(') ? frame.functionName : '(native)', where: '', ours: false };
  if (url.startsWith('node:'))
    return {
      group: `node:${
        url
          .slice(5)
          .replace(/^internal\//, '')
          .split('/')[0]
      }`,
      where: url,
      ours: false,
    };
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  const modules = file.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = file.slice(modules + 14).split('/');
    const pkg = parts[0]!.startsWith('@') ? `${parts[0]!}/${parts[1]!}` : parts[0]!;
    return {
      group: pkg,
      where: `${pkg}/${parts.slice(pkg.includes('/') ? 2 : 1).join('/')}:${frame.lineNumber + 1}`,
      ours: false,
    };
  }
  const marker = file.lastIndexOf('/dist-bench/');
  if (marker >= 0) {
    const rel = file.slice(marker + 12);
    const entry: { originalSource?: string; originalLine?: number } | undefined = sourceMapOf(file)?.findEntry(
      frame.lineNumber,
      frame.columnNumber,
    );
    const ts = entry?.originalSource
      ? path.relative(path.resolve(file.slice(0, marker)), fileURLToPath(new URL(entry.originalSource, 'file://' + file)))
      : rel.replace(/\.js$/, '.ts');
    const line = entry?.originalLine !== undefined ? entry.originalLine + 1 : frame.lineNumber + 1;
    return { group: ts, where: `${ts}:${line}`, ours: ts.startsWith('lib/') };
  }
  return { group: file, where: `${file}:${frame.lineNumber + 1}`, ours: false };
}

export function summarizeProfile(file: string, top = 25, requests?: number): string {
  const pct = (n: number, of: number): string => {
    const share = `${((100 * n) / of).toFixed(1)}%`.padStart(6);
    return requests === undefined || requests <= 0 ? share : `${share} ${(n / requests).toFixed(2).padStart(6)} µs/req`;
  };
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  // Time of sample i is the delta to the next sample (V8's convention).
  const time = new Map<number, number>();
  const selfByFunction = new Map<string, number>();
  const selfByGroup = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const location = new Map<number, ReturnType<typeof locate>>();
  const key = (node: ProfileNode): string => {
    let loc = location.get(node.id);
    if (loc === undefined) {
      loc = locate(node.callFrame);
      location.set(node.id, loc);
    }
    return `${node.callFrame.functionName || '(anonymous)'}\t${loc.where}`;
  };
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const node = byId.get(id)!;
    total += dt;
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    time.set(id, (time.get(id) ?? 0) + dt);
    const k = key(node);
    selfByFunction.set(k, (selfByFunction.get(k) ?? 0) + dt);
    const group = location.get(id)!.group;
    selfByGroup.set(group, (selfByGroup.get(group) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (!location.get(cur)) key(n);
      if (!location.get(cur)!.ours) continue;
      const fk = key(n);
      if (seen.has(fk)) continue;
      seen.add(fk);
      inclusive.set(fk, (inclusive.get(fk) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const lines: string[] = [];
  const perRequest = requests ? `, ${requests} requests, ${(busy / requests).toFixed(1)} µs busy per request` : '';
  lines.push(
    `${path.basename(file)}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy${perRequest}; percentages below are of busy time.`,
  );
  const sorted = (m: Map<string, number>): [string, number][] => [...m.entries()].sort((a, b) => b[1] - a[1]);

  lines.push('', 'Self time by file or package:');
  for (const [group, t] of sorted(selfByGroup).slice(0, 20)) lines.push(`  ${pct(t, busy)}  ${group}`);
  const oursSelf = sorted(selfByGroup).filter(([g]) => g.startsWith('lib/'));
  const oursTotal = oursSelf.reduce((s, [, t]) => s + t, 0);
  lines.push(`  (lib/ in total: ${pct(oursTotal, busy).trim()} self)`);

  lines.push('', `Top ${top} functions by self time:`);
  for (const [k, t] of sorted(selfByFunction).slice(0, top)) {
    const [name, where] = k.split('\t');
    lines.push(`  ${pct(t, busy)}  ${name}  ${where}`);
  }

  lines.push('', 'Our functions (lib/) by inclusive time (self + callees):');
  for (const [k, t] of sorted(inclusive).slice(0, top)) {
    const [name, where] = k.split('\t');
    lines.push(`  ${pct(t, busy)}  ${name}  ${where}`);
  }
  return lines.join('\n');
}

const script = process.argv.at(1);
if (script !== undefined && fileURLToPath(import.meta.url) === path.resolve(script)) {
  const file = process.argv.at(2);
  if (file === undefined) {
    console.error('usage: node dist-bench/bench/profile-summary.js <file.cpuprofile> [top]');
    process.exitCode = 1;
  } else {
    console.log(
      summarizeProfile(
        file,
        Number(process.argv.at(3) ?? 25),
        process.argv.at(4) === undefined ? undefined : Number(process.argv.at(4)),
      ),
    );
  }
}
