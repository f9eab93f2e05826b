// What is open at once, per client and in all, under two caps: the API's sockets
// (connection-limits.ts) and its job event streams (routes/job-events.ts) count the same way.

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
   * Counts one more for `client` (undefined: exempt from the per-client cap) and returns the
   * function that gives it back (once), or says which cap refused it.
   */
  take(client: string | undefined): Refusal | (() => void) {
    const held = client === undefined ? 0 : (this.byClient.get(client) ?? 0);
    const refusal: Refusal | null =
      this.max > 0 && this.total >= this.max ? 'total' : client !== undefined && this.perClient > 0 && held >= this.perClient ? 'client' : null;
    if (refusal) {
      this.refused[refusal]++;
      return refusal;
    }
    if (client !== undefined) this.byClient.set(client, held + 1);
    this.total++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.total--;
      if (client === undefined) return;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left > 0) this.byClient.set(client, left);
      else this.byClient.delete(client);
    };
  }

  get open(): number {
    return this.total;
  }
}
