// A small Server-Sent Events reader over fetch for tests: frames parsed as the SSE spec says
// (id, event, data lines; comment lines kept apart so heartbeats can be seen).
export interface SseEvent {
  id: number;
  type: string;
  data: unknown;
}

export interface SseStream {
  status: number;
  events: SseEvent[];
  comments: string[];
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  /** Resolves once `pred` holds for the events received so far. */
  until(pred: (events: SseEvent[]) => boolean, timeoutMs?: number): Promise<SseEvent[]>;
  close(): void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const ctl = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ctl.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  let done = false;
  const ended = (async () => {
    if (!res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done: eof } = await reader.read();
        if (eof) break;
        buf += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const e: Partial<{ id: number; type: string; data: string }> = {};
          for (const line of frame.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) e.id = Number(line.slice(4));
            else if (line.startsWith('event: ')) e.type = line.slice(7);
            else if (line.startsWith('data: ')) e.data = line.slice(6);
          }
          if (e.id !== undefined && e.data !== undefined) events.push({ id: e.id, type: e.type ?? 'message', data: JSON.parse(e.data) });
          notify();
        }
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      done = true;
      notify();
    }
  })();
  return {
    status: res.status,
    events,
    comments,
    ended,
    async until(pred, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(events)) {
        if (done) throw new Error(`stream ended before the condition held; events: ${JSON.stringify(events.map((e) => [e.id, e.type]))}`);
        if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => [e.id, e.type]))}`);
        await new Promise<void>((resolve) => {
          const w = () => (waiters.delete(w), resolve());
          waiters.add(w);
          setTimeout(w, 200);
        });
      }
      return events;
    },
    close() {
      ctl.abort();
    },
  };
}
