import { BACKEND_SCRIPTS, type DropRecord } from './redis-backend.scripts.js';
import { groupOf, type RedisBackendKeys } from './redis-backend.keys.js';
import { settleAll, type RedisTransport } from './redis-client.adapter.js';

/*
 * On a Redis Cluster (on a standalone Redis, writes, removals and tag flushes do all of this
 * inside their own script, see `redis-write.coalescer.ts`; garbage collection and readers'
 * pruning still come here):
 *
 * Index upkeep whose keys lie in other slots (the expiry index, tag sets of other groups, such as
 * the metadata tags "all sessions" or a user's tag) is sent as separate commands. Additions go
 * in the same tick as the entry script (node-redis pipelines them: one round trip on a
 * standalone client, one per node in parallel on a cluster) and are queued before it: TAG_ADD
 * of each foreign tag set and one EXPIRY_ADD on the expiry index (which, like tag sets, gets a
 * native TTL as long as its longest-living entry's, so no key outlives what it indexes). Removals of foreign memberships and
 * expiry records that only the script's answer names (the old tags of an overwritten or removed
 * entry) follow in a second round trip, only when there are any. A guarded write sends its
 * foreign tag additions only after the guard allowed it; its expiry records, and every addition
 * of a conditional write without a guard (`mustExist`, e.g. session metadata), go out with the
 * script, so a refused write leaves at most index records without their entry (see below).
 *
 * What a crash or a failing node between those commands can leave, and why it is harmless:
 * - a tag-set member whose entry is gone, or no longer carries the tag: readers check every
 *   member against the entry and prune it (one check, once); tag sets also get a native TTL as
 *   long as their longest-living member's, so leftovers disappear even if nothing reads them;
 * - an expiry record whose entry is gone, has no lifetime or lives longer: garbage collection
 *   checks every due record against the entry before removing anything, and drops or re-scores
 *   the record;
 * - an entry without its expiry record: invisible once expired (reads check the header), and
 *   Redis drops it by its native TTL (lifetime + `safetyTtlMargin`), but garbage collection
 *   does not hand it over for clean-up;
 * - an entry without a foreign tag membership (its TAG_ADD failed, e.g. that node was down;
 *   the write then reports the failure): the next write of the entry adds it again.
 *
 * Versions. Every write stamps the entries it stores with a random version, kept in the entry
 * header and as the member's score in each tag set it adds the entry to. A membership is only
 * ever removed from outside the entry's slot by TAG_FORGET, which compares the score with the
 * version it saw: a removal that arrives after the id was stored again (with a new version) leaves
 * the new membership alone, whatever order the commands reach the nodes in. Likewise EXPIRY_FIX
 * drops or re-scores a record only if it still has the score that was seen.
 */

/**
 * Index upkeep in other slots, collected while an operation runs and sent together:
 * memberships to add or forget per tag set, expiry records to add or fix.
 */
export class IndexWork {
  readonly adds = new Map<string, { pttl: number; pairs: string[] }>();
  readonly forgets = new Map<string, string[]>();
  readonly expiryAdds: string[] = [];
  /** Native TTL ms of the longest-living entry among `expiryAdds`: the index lives at least as long. */
  expiryPttl = 0;
  readonly expiryFixes: string[] = [];

  add(tag: string, id: string, version: string, pttl: number): void {
    const entry = this.adds.get(tag);
    if (entry === undefined) {
      this.adds.set(tag, { pttl, pairs: [version, id] });
      return;
    }
    entry.pairs.push(version, id);
    entry.pttl = entry.pttl === 0 || pttl === 0 ? 0 : Math.max(entry.pttl, pttl);
  }

  /** An expiry record for an entry stored with a lifetime (and a native TTL of `pttl` ms). */
  addExpiry(id: string, expiry: number, pttl: number): void {
    this.expiryAdds.push(String(expiry), id);
    this.expiryPttl = Math.max(this.expiryPttl, pttl);
  }

  forget(tag: string, id: string, version: string): void {
    const pairs = this.forgets.get(tag);
    if (pairs === undefined) this.forgets.set(tag, [id, version]);
    else pairs.push(id, version);
  }

  /** `next` '' removes the record; either way only if its score is still `seen`. */
  fixExpiry(id: string, seen: string, next: string): void {
    this.expiryFixes.push(id, seen, next);
  }

  /** Takes the 'T' / 'E' clean-up records a script answered, from `offset` on. */
  takeCleanup(flat: readonly unknown[], offset: number): void {
    for (let i = offset; i < flat.length;) {
      if (flat[i] === 'T') {
        this.forget(String(flat[i + 1]), String(flat[i + 2]), String(flat[i + 3]));
        i += 4;
      } else {
        this.fixExpiry(String(flat[i + 1]), String(flat[i + 2]), '');
        i += 3;
      }
    }
  }

  /**
   * Notes the foreign memberships and the expiry record of removed entries for clean-up.
   * `seenScore`: the expiry record's score as read from the index (default: the entry's expiry).
   */
  forgetRemoved(records: readonly DropRecord[], seenScore?: string): void {
    for (const record of records) {
      if (record.code !== 'live' && record.code !== 'dead') continue;
      const group = groupOf(record.id);
      for (const tag of record.tags.split(' ')) {
        if (tag !== '' && tag !== group) this.forget(tag, record.id, record.version);
      }
      if (seenScore !== undefined) this.fixExpiry(record.id, seenScore, '');
      else if (record.expiry !== '0') this.fixExpiry(record.id, record.expiry, '');
    }
  }

  get empty(): boolean {
    return this.adds.size === 0 && this.forgets.size === 0 && this.expiryAdds.length === 0 && this.expiryFixes.length === 0;
  }
}

/** Sends {@link IndexWork} to the index keys it names. */
export class IndexUpkeep {
  constructor(
    private readonly transport: RedisTransport,
    private readonly keys: RedisBackendKeys,
  ) {}

  /** The commands of `work`, sent in the same tick; the promises of their replies. */
  start(work: IndexWork, now = Date.now()): Promise<unknown>[] {
    const { transport, keys } = this;
    const script = (name: keyof typeof BACKEND_SCRIPTS, key: string, args: readonly string[]) =>
      transport.evalScript(BACKEND_SCRIPTS[name], key, [keys.prefix, String(now), ...args]);
    const promises: Promise<unknown>[] = [];
    for (const [tag, { pttl, pairs }] of work.adds) {
      promises.push(script('tagAdd', keys.tagKey(tag), [String(pttl), ...pairs]));
    }
    if (work.expiryAdds.length > 0) {
      promises.push(script('expiryAdd', keys.expiryKey, [String(work.expiryPttl), ...work.expiryAdds]));
    }
    for (const [tag, pairs] of work.forgets) {
      promises.push(script('tagForget', keys.tagKey(tag), pairs));
    }
    if (work.expiryFixes.length > 0) {
      promises.push(script('expiryFix', keys.expiryKey, work.expiryFixes));
    }
    return promises;
  }

  /** Sends `work` and waits for it; answers how many expiry records EXPIRY_FIX changed. */
  async send(work: IndexWork): Promise<number> {
    if (work.empty) return 0;
    const replies = await settleAll(this.start(work));
    return work.expiryFixes.length > 0 ? Number(replies.at(-1)) : 0;
  }
}
