import type { LoadResult } from './load.js';
import type { MemoryReport } from './memory-child.js';
import type { Scenario } from './scenarios.js';
import { ceilingOf, peerOf, type Variant } from './variants.js';

/** The rounds of one app on one scenario, averaged. */
export interface Measurement {
  readonly variant: Variant;
  readonly scenario: Scenario;
  readonly rounds: readonly LoadResult[];
}

export interface Summary {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly non2xx: number;
  readonly errors: number;
  /** App CPU time per response, µs (median over the rounds). */
  readonly cpu: number | undefined;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(rounds: readonly LoadResult[]): Summary {
  return {
    rps: median(rounds.map((r) => r.rps)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    cpu: rounds.every((r) => r.cpuPerRequest !== undefined) ? median(rounds.map((r) => r.cpuPerRequest!)) : undefined,
    non2xx: rounds.reduce((sum, r) => sum + r.non2xx, 0),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
  };
}

/** One target from issue 7, checked against the table. */
export interface TargetCheck {
  readonly met: boolean;
  readonly text: string;
}

const ADAPTER_LABEL = { express: 'Express', fastify: 'Fastify' } as const;

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** autocannon measures latency in whole milliseconds. */
function ms(n: number): string {
  return String(Math.round(n));
}

function ratio(n: number): string {
  return `${n.toFixed(2)}×`;
}

/**
 * The table (Markdown), one row per app and scenario; on our rows the ratio to the peer with
 * the same adapter and store, and to the ceiling where it exists (anonymous, read).
 */
export function renderTable(
  measurements: readonly Measurement[],
  variants: readonly Variant[],
  scenarios: readonly Scenario[],
): { table: string; targets: TargetCheck[] } {
  const byKey = new Map<string, Summary>();
  const roundsByKey = new Map<string, readonly LoadResult[]>();
  for (const m of measurements) {
    byKey.set(`${m.variant.name}|${m.scenario.name}`, summarize(m.rounds));
    roundsByKey.set(`${m.variant.name}|${m.scenario.name}`, m.rounds);
  }
  const get = (variant: Variant | undefined, scenario: Scenario): Summary | undefined =>
    variant === undefined ? undefined : byKey.get(`${variant.name}|${scenario.name}`);
  /**
   * Median over the rounds of req/s of ours / req/s of other (each round's pair measured back
   * to back), and the same for CPU time per request, inverted (other / ours) so that > 1
   * means ours is better in both.
   */
  const ratioOf = (ours: Variant, other: Variant, scenario: Scenario): { rps: number; cpu: number | undefined } => {
    const a = roundsByKey.get(`${ours.name}|${scenario.name}`)!;
    const b = roundsByKey.get(`${other.name}|${scenario.name}`)!;
    const n = Math.min(a.length, b.length);
    const rounds = Array.from({ length: n }, (_, i) => i);
    const cpuKnown = rounds.every((i) => a[i]!.cpuPerRequest !== undefined && b[i]!.cpuPerRequest !== undefined);
    return {
      rps: median(rounds.map((i) => a[i]!.rps / b[i]!.rps)),
      cpu: cpuKnown ? median(rounds.map((i) => b[i]!.cpuPerRequest! / a[i]!.cpuPerRequest!)) : undefined,
    };
  };
  const both = (r: { rps: number; cpu: number | undefined }): string =>
    `${ratio(r.rps)}${r.cpu === undefined ? '' : ` · ${ratio(r.cpu)}`}`;

  const lines = [
    '| adapter | scenario | app | req/s | p50 ms | p99 ms | CPU µs/req | ours vs peer | ours vs ceiling |',
    '|---|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  const targets: TargetCheck[] = [];
  for (const adapter of ['express', 'fastify'] as const) {
    for (const scenario of scenarios) {
      for (const variant of variants) {
        if (variant.adapter !== adapter) continue;
        const s = get(variant, scenario);
        if (s === undefined) continue;
        let vsPeer = '';
        let vsCeiling = '';
        if (variant.kind === 'ours') {
          const peer = peerOf(variant);
          const p = get(peer, scenario);
          if (p !== undefined && peer !== undefined) {
            const r = ratioOf(variant, peer, scenario);
            vsPeer = both(r);
            if (variant.injected !== true)
              targets.push({
                met: r.rps >= 1,
                text: `${ADAPTER_LABEL[adapter]} · ${scenario.label} · ${variant.store}: ours vs ${peer.label}: ${both(r)}`,
              });
          } else if (scenario.note !== undefined) {
            vsPeer = scenario.note;
          }
          const ceiling = ceilingOf(variant);
          if (get(ceiling, scenario) !== undefined) {
            const r = ratioOf(variant, ceiling, scenario);
            vsCeiling = both(r);
            if (variant.store === 'memory' && variant.injected !== true) {
              targets.push({
                met: r.rps >= 0.9,
                text: `${ADAPTER_LABEL[adapter]} · ${scenario.label} · memory: ours vs the ceiling: ${both(r)} (target >= 0.90×)`,
              });
            }
          }
        }
        const flags = s.non2xx + s.errors > 0 ? ` ⚠ ${s.non2xx} non-2xx, ${s.errors} errors` : '';
        const app = variant.kind === 'ours' ? `**${variant.label}**` : variant.label;
        lines.push(
          `| ${ADAPTER_LABEL[adapter]} | ${scenario.label} | ${app}${flags} | ${int(s.rps)} | ${ms(s.p50)} | ${ms(s.p99)} | ${s.cpu === undefined ? '' : int(s.cpu)} | ${vsPeer} | ${vsCeiling} |`,
        );
      }
    }
  }
  return { table: lines.join('\n'), targets };
}

export function renderMemory(reports: readonly MemoryReport[]): string {
  const sessions = reports[0]?.sessions ?? 0;
  const lines = [
    `| store (${int(sessions)} idle sessions) | keys each | heap used | array buffers | RSS | per session (heap + array buffers) | ours ÷ express-session |`,
    '|---|--:|--:|--:|--:|--:|--:|',
  ];
  const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const names: Record<string, string> = {
    ours: 'ours, MemoryBackend (metadata + storage cache)',
    'express-session': 'express-session, MemoryStore',
  };
  // Typed arrays live outside V8's heapUsed: both count, or a store could hide bytes there.
  const perSession = (r: MemoryReport): number => (r.heapUsedBytes + r.arrayBuffersBytes) / r.sessions;
  for (const r of reports) {
    const peer = reports.find((p) => p.impl === 'express-session' && p.keys === r.keys);
    const vs = r.impl === 'ours' && peer !== undefined ? ratio(perSession(r) / perSession(peer)) : '';
    lines.push(
      `| ${names[r.impl] ?? r.impl} | ${r.keys} | ${mb(r.heapUsedBytes)} | ${mb(r.arrayBuffersBytes)} | ${mb(r.rssBytes)} | ${int(perSession(r))} B | ${vs} |`,
    );
  }
  for (const r of reports) {
    if (r.breakdown === undefined) continue;
    const parts = Object.entries(r.breakdown).filter(([name]) => name !== 'total');
    lines.push(
      '',
      `Where ours's bytes go, ${r.keys} key(s) per session (estimated from MemoryBackend.memoryUsage(), per session): ` +
        parts.map(([name, bytes]) => `${name} ${int(bytes)} B`).join(', ') +
        `; sum ${int(r.breakdown.total ?? 0)} B against ${int(perSession(r))} B measured.`,
    );
  }
  return lines.join('\n');
}
