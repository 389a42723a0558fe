import { describe, expect, it } from '@jest/globals';
import { CommitPlanner } from '../../lib/session/commit-planner.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionChangeSet } from '../../lib/session/session-change-set.js';
import type { SessionMetadata } from '../../lib/session/session-metadata.interface.js';

const NOW = 1_000_000;
const planner = new CommitPlanner(60);
const meta = (overrides: Partial<SessionMetadata> = {}): SessionMetadata => ({
  storageId: 's1',
  createdAt: NOW - 1000,
  lastActivity: NOW - 1000,
  tags: [],
  ...overrides,
});

describe('CommitPlanner', () => {
  describe('decide', () => {
    it('does not store a new anonymous session without data, tags or user', () => {
      expect(planner.decide(new SessionChangeSet(), meta(), false, NOW)).toBeUndefined();
    });

    it('creates a new session once it holds data, a tag or a user', () => {
      const changes = new SessionChangeSet();
      changes.put('a', '1');
      expect(planner.decide(changes, meta(), false, NOW)).toEqual({
        create: true,
        replace: true,
        metadataChanged: true,
        writeMetadata: true,
      });
      expect(planner.decide(new SessionChangeSet(), meta({ tags: ['t'] }), false, NOW)?.create).toBe(true);
      expect(planner.decide(new SessionChangeSet(), meta({ userId: 'alice' }), false, NOW)?.create).toBe(true);
    });

    it('writes nothing for an unchanged stored session within the grace period', () => {
      expect(planner.decide(new SessionChangeSet(), meta(), true, NOW)).toBeUndefined();
    });

    it('rewrites the last activity of an unchanged session once the grace period is over', () => {
      const decision = planner.decide(new SessionChangeSet(), meta({ lastActivity: NOW - 60_000 }), true, NOW);
      expect(decision).toEqual({ create: false, replace: false, metadataChanged: false, writeMetadata: true });
    });

    it('writes data without metadata within the grace period', () => {
      const changes = new SessionChangeSet();
      changes.put('a', '1');
      expect(planner.decide(changes, meta(), true, NOW)).toEqual({
        create: false,
        replace: false,
        metadataChanged: false,
        writeMetadata: false,
      });
    });

    it('writes metadata for a touch, and as changed for tags, fields and renewals', () => {
      const touched = new SessionChangeSet();
      touched.requestTouch();
      expect(planner.decide(touched, meta(), true, NOW)).toMatchObject({ metadataChanged: false, writeMetadata: true });
      const tagged = new SessionChangeSet();
      tagged.addTag('t');
      expect(planner.decide(tagged, meta(), true, NOW)).toMatchObject({ metadataChanged: true, writeMetadata: true });
      const renewed = new SessionChangeSet();
      renewed.retireId('old');
      expect(planner.decide(renewed, meta(), true, NOW)).toMatchObject({ metadataChanged: true, replace: false });
    });

    it('replaces the metadata in full after the data moved to a new storage id', () => {
      const changes = new SessionChangeSet();
      changes.retireStorage('s0');
      expect(planner.decide(changes, meta(), true, NOW)).toMatchObject({ create: false, replace: true });
    });
  });

  it('issuesId: a first write or a renewal gives the client an id it does not hold', () => {
    const data = new SessionChangeSet();
    data.put('a', '1');
    expect(planner.issuesId(data, meta(), false, NOW)).toBe(true);
    expect(planner.issuesId(data, meta(), true, NOW)).toBe(false);
    const renewed = new SessionChangeSet();
    renewed.retireId('old');
    expect(planner.issuesId(renewed, meta(), true, NOW)).toBe(true);
  });

  it('plan() carries the snapshot, the metadata and whether storage is created', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.retireId('old');
    const snapshot = changes.snapshot();
    const decision = planner.decide(snapshot, meta(), true, NOW)!;
    const metadata = meta({ lastActivity: NOW });
    const key = metadataKeyOf('new-id');
    expect(planner.plan(key, decision, snapshot, metadata)).toEqual({
      metadataKey: key,
      metadata,
      create: false,
      changes: snapshot.data,
      retiredKeys: ['old'],
    });
  });

  it("merge() puts this request's tag and field changes on top of fresh metadata", () => {
    const changes = new SessionChangeSet();
    changes.addTag('mine');
    changes.removeTag('gone');
    changes.setField('permanent', true);
    const fresh = meta({ tags: ['gone', 'theirs'], userId: 'alice', lifetime: 30 });
    const merged = planner.merge(fresh, changes, NOW);
    expect([...merged.tags].sort()).toEqual(['mine', 'theirs']);
    expect(merged).toMatchObject({ userId: 'alice', lifetime: 30, permanent: true, lastActivity: NOW });
  });
});
