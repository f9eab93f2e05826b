// What is open at once, per client and in all, under two caps: the API's sockets
// (connection-limits.ts), its job event streams (routes/job-events.ts) and the bytes of the request
// bodies it holds (plugins/body-budget.ts) count the same way.

export type Refusal = 'client' | 'total';

/** Counts per client and in all; a cap of 0 is no cap. */
export class CappedCounts {
  private readonly byClient = new Map<string, number>();
  private total = 0;
  /** Refusals so far, by the cap they met. */
  readonly refused: Record<Refusal, number> = { client: 0, total: 0 };

  constructor(
    readonly perClient: number,
    readonly max: number,
  ) {}

  /**
   * Counts `amount` more for `client` (undefined: exempt from the per-client cap) and returns the
   * function that gives it back (once), or says which cap refused it. What holds nothing is let
   * through even when `amount` alone is over a cap, so one request larger than a cap still runs
   * (by itself).
   */
  take(client: string | undefined, amount = 1): Refusal | (() => void) {
    const held = client === undefined ? 0 : (this.byClient.get(client) ?? 0);
    const over = (count: number, cap: number) => cap > 0 && count > 0 && count + amount > cap;
    const refusal: Refusal | null = over(this.total, this.max) ? 'total' : client !== undefined && over(held, this.perClient) ? 'client' : null;
    if (refusal) {
      this.refused[refusal]++;
      return refusal;
    }
    if (client !== undefined) this.byClient.set(client, held + amount);
    this.total += amount;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.total -= amount;
      if (client === undefined) return;
      const left = (this.byClient.get(client) ?? amount) - amount;
      if (left > 0) this.byClient.set(client, left);
      else this.byClient.delete(client);
    };
  }

  /** What `client` holds now. */
  heldBy(client: string): number {
    return this.byClient.get(client) ?? 0;
  }

  get open(): number {
    return this.total;
  }
}
