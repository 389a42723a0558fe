import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * The folders of lib/ from the bottom up. A file may import from its own folder and from
 * folders of a lower rank, never from a higher one or from a sibling of the same rank; this
 * keeps the layers (HTTP -> session -> store -> cache -> backend) one-way and free of cycles.
 * The engines (redis/, cache-manager/, postgres/) sit just above the core interfaces: the
 * core never imports an engine, and only the public barrel (lib/index.ts) names them.
 */
const RANKS: Record<string, number> = {
  errors: 0,
  cache: 1,
  locking: 1,
  bags: 2,
  redis: 2,
  'cache-manager': 2,
  legacy: 2,
  postgres: 2,
  session: 3,
  manager: 4,
  http: 5,
  nest: 6,
  terminus: 6,
  opentelemetry: 6,
  cli: 6,
  '.': 7,
};

const LIB = resolve(dirname(new URL(import.meta.url).pathname), '../../lib');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts') ? [path] : [];
  });
}

function folderOf(file: string): string {
  const rel = relative(LIB, file);
  return rel.includes(sep) ? rel.split(sep)[0]! : '.';
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) specs.push(match[1]!);
  return specs;
}

describe('lib/ layering', () => {
  const files = sources(LIB);

  it('knows the rank of every folder in lib/', () => {
    const unknown = [...new Set(files.map(folderOf))].filter((folder) => !(folder in RANKS));
    expect(unknown).toEqual([]);
  });

  it('imports only from the same folder or a lower layer (no upward import, no folder cycle)', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = folderOf(file);
      for (const spec of relativeImports(file)) {
        const target = resolve(dirname(file), spec);
        if (!target.startsWith(LIB + sep)) {
          violations.push(`${relative(LIB, file)} imports ${spec}, outside lib/`);
          continue;
        }
        const to = folderOf(target);
        if (to === from) continue;
        if (RANKS[to]! >= RANKS[from]!) violations.push(`${relative(LIB, file)} (${from}) imports ${spec} (${to})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('keeps optional peers out of the core: only their engine folder imports redis or cache-manager', () => {
    const peers: Record<string, string> = {
      redis: 'redis',
      'cache-manager': 'cache-manager',
      pg: 'postgres',
      '@nestjs/terminus': 'terminus',
      '@opentelemetry/api': 'opentelemetry',
      'nest-commander': 'cli',
    };
    const violations: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'".][^'"]*)['"]/g)) {
        const engine = peers[match[1]!];
        if (engine !== undefined && folderOf(file) !== engine) violations.push(`${relative(LIB, file)} imports ${match[1]}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
