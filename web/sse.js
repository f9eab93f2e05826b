// Server-Sent Events over fetch. The browser's EventSource cannot send an Authorization header,
// so the dashboard reads the stream itself: frames are split on blank lines, `id`, `event` and
// `data` fields are read as the SSE spec says, and comment lines (heartbeats) are skipped. When
// the connection drops before the job finished, it reconnects with Last-Event-ID, so the server
// sends what was missed and nothing twice.

/** Parses SSE text; returns the events complete so far and the unparsed rest. */
export function parseFrames(buffer) {
  const events = [];
  let cut;
  while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
    const frame = buffer.slice(0, cut);
    buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
    const e = { id: null, type: 'message', data: [] };
    for (const line of frame.split(/\r?\n/)) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'id') e.id = value;
      else if (field === 'event') e.type = value;
      else if (field === 'data') e.data.push(value);
    }
    if (e.data.length) events.push({ id: e.id, type: e.type, data: e.data.join('\n') });
  }
  return { events, rest: buffer };
}

/**
 * Follows `url` until `isDone()` says the job is over or `close()` is called, from the event after
 * `lastEventId` when one is given (else from the first). onEvent({id, type, data}) gets each
 * event once; onState(state, detail) gets 'live' | 'reconnecting' | 'ended' | 'error'.
 */
export function followEvents(url, { headers, onEvent, onState, isDone, lastEventId = null }) {
  const ctl = new AbortController();
  let lastId = lastEventId == null ? null : String(lastEventId);
  let closed = false;
  (async () => {
    let delay = 1000;
    while (!closed) {
      try {
        const h = new Headers(headers());
        h.set('accept', 'text/event-stream');
        if (lastId != null) h.set('last-event-id', lastId);
        const res = await fetch(url, { headers: h, signal: ctl.signal, cache: 'no-store' });
        if (!res.ok) {
          onState('error', res.status);
          // Not something a retry fixes (no key, wrong scope, no such job).
          if ([400, 401, 403, 404].includes(res.status)) return;
        } else {
          onState('live');
          delay = 1000;
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const parsed = parseFrames(buffer + decoder.decode(value, { stream: true }));
            buffer = parsed.rest;
            for (const e of parsed.events) {
              if (e.id != null) lastId = e.id;
              onEvent(e);
            }
          }
          if (isDone()) {
            onState('ended');
            return;
          }
        }
      } catch (err) {
        if (closed || err.name === 'AbortError') return;
      }
      onState('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return {
    close() {
      closed = true;
      ctl.abort();
    },
  };
}
