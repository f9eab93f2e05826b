// One leader among replicas: a Redis key holding the leader's random token with an expiry. The
// leader renews it each round; if the leader dies, the key expires and the next replica to try
// takes over. Renew and release check the token first (in one script), so a replica never
// extends or deletes a lock another one holds.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

const ACQUIRE = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

const RELEASE = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0`;

export class LeaderLock {
  readonly token = randomUUID();

  constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly ttlMs: number,
  ) {}

  /** Takes the lock, or renews it when this instance holds it. True while this instance leads. */
  async acquire(): Promise<boolean> {
    return (await this.redis.eval(ACQUIRE, 1, this.key, this.token, String(this.ttlMs))) === 1;
  }

  async release(): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.key, this.token);
  }
}
