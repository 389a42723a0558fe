import { randomBytes } from 'node:crypto';
import type { SessionIdGenerator } from './session-id-generator.interface.js';

const POOL_IDS = 128;

/**
 * Default id generator: 192 random bits (24 bytes) from `crypto.randomBytes`, base64url,
 * 32 characters. Bytes are drawn in pools of 128 ids because one `randomBytes` call per id
 * dominates the cost of starting a session.
 */
export class RandomIdGenerator implements SessionIdGenerator {
  private static readonly SHAPE = /^[A-Za-z0-9_-]{32}$/;
  private pool: Buffer = Buffer.alloc(0);
  private offset = 0;

  generate(): string {
    if (this.offset >= this.pool.length) {
      this.pool = randomBytes(24 * POOL_IDS);
      this.offset = 0;
    }
    const id = this.pool.toString('base64url', this.offset, this.offset + 24);
    // Wipe used bytes so the pool never holds an id that was already handed out.
    this.pool.fill(0, this.offset, this.offset + 24);
    this.offset += 24;
    return id;
  }

  isValid(id: string): boolean {
    return RandomIdGenerator.SHAPE.test(id);
  }
}
