import { parse, stringify } from 'devalue';
import type { SessionSerializer } from './session-serializer.interface.js';

/**
 * The default serializer, on `devalue`: plain objects, arrays, strings, numbers (incl. NaN,
 * Infinity, -0), booleans, null, undefined, Date, Map, Set, BigInt, RegExp, typed arrays.
 * It refuses functions, symbols, class instances and `__proto__` keys, and this class also
 * refuses cycles (devalue could encode them, but a cyclic session value is nearly always a
 * mistake such as storing a request object, and plain JSON tooling cannot read it back).
 */
export class DevalueSerializer implements SessionSerializer {
  serialize(value: unknown): string {
    if (typeof value === 'object' && value !== null) assertAcyclic(value, [], '');
    try {
      return stringify(value);
    } catch (error) {
      const path = (error as { path?: string }).path;
      const where = path ? ` at ${path}` : '';
      throw new Error(`${(error as Error).message.replace(/^Cannot stringify/, 'cannot store')}${where}`);
    }
  }

  deserialize(data: string): unknown {
    return parse(data);
  }
}

function assertAcyclic(value: object, ancestors: object[], path: string): void {
  if (ancestors.includes(value)) throw new Error(`cyclic structure at ${path || '(root)'}`);
  ancestors.push(value);
  if (value instanceof Map) {
    for (const [k, v] of value as Map<unknown, unknown>) {
      if (typeof k === 'object' && k !== null) assertAcyclic(k, ancestors, `${path}.<key>`);
      if (typeof v === 'object' && v !== null) assertAcyclic(v, ancestors, `${path}.get(${String(k)})`);
    }
  } else if (value instanceof Set) {
    for (const v of value as Set<unknown>) if (typeof v === 'object' && v !== null) assertAcyclic(v, ancestors, `${path}.<item>`);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v === 'object' && v !== null) assertAcyclic(v, ancestors, `${path}[${i}]`);
    }
  } else {
    for (const k of Object.keys(value)) {
      const v: unknown = (value as Record<string, unknown>)[k];
      if (typeof v === 'object' && v !== null) assertAcyclic(v, ancestors, `${path}.${k}`);
    }
  }
  ancestors.pop();
}
