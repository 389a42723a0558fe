import { randomBytes } from 'node:crypto';
import type { SessionIdGenerator } from './session-id-generator.interface.js';

const POOL_IDS = 128;

/**
 * Default id generator: 192 random bits (24 bytes) from `crypto.randomBytes`, base64url,
 * 32 characters. Bytes are drawn in pools of 128 ids because one `randomBytes` call per id
 * dominates the cost of starting a session.
 */
export class RandomIdGenerator implements SessionIdGenerator {
  private readonly shape: RegExp;
  private pool: Buffer = Buffer.alloc(0);
  private offset = 0;

  /**
   * @param bytes random bytes per id (at least 16 = 128 bits). @default 24
   * @throws RangeError for fewer than 16 bytes.
   */
  constructor(private readonly bytes = 24) {
    if (!Number.isInteger(bytes) || bytes < 16) throw new RangeError(`RandomIdGenerator needs at least 16 bytes, got ${bytes}`);
    this.shape = new RegExp(`^[A-Za-z0-9_-]{${Math.ceil((bytes * 4) / 3)}}$`);
  }

  generate(): string {
    const size = this.bytes;
    if (this.offset >= this.pool.length) {
      this.pool = randomBytes(size * POOL_IDS);
      this.offset = 0;
    }
    const id = this.pool.toString('base64url', this.offset, this.offset + size);
    // Wipe used bytes so the pool never holds an id that was already handed out.
    this.pool.fill(0, this.offset, this.offset + size);
    this.offset += size;
    return id;
  }

  isValid(id: string): boolean {
    return this.shape.test(id);
  }
}
