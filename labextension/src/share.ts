/**
 * One long-poll per browser, however many tabs of this server are open. A browser keeps six
 * connections to a server at most (HTTP/1.1), and a long-poll holds one: six tabs each polling
 * would stall every other request of the server's pages. So the tabs of one server elect a
 * leader with a Web Lock; it alone follows the server and tells the others on a
 * BroadcastChannel. When it closes, the lock passes to another tab, which follows from then on.
 * Every tab reads the state once when it opens (answered at once: nothing is held).
 */
import { Follower, QUIET_WAIT, RETRY_MOST, delay, sleeper, type Ask } from './follow';
import type { SignInState } from './state';

export interface Sink {
  changed: (state: SignInState, at: number) => void;
  down: (down: boolean) => void;
}

type Message = { kind: 'state'; state: SignInState; at: number } | { kind: 'down'; down: boolean };

/** What the browser gives (tests give their own). */
export interface Tabs {
  /** Runs `lead` once this tab holds the lock named `key` (at once, when there are no locks). */
  lock: (key: string, lead: () => Promise<void>) => void;
  /** A channel to the other tabs of the same origin named `key` (null: there are none). */
  channel: (key: string) => Pick<BroadcastChannel, 'postMessage' | 'addEventListener'> | null;
}

export const browserTabs: Tabs = {
  lock: (key, lead) => {
    if (typeof navigator !== 'undefined' && navigator.locks) {
      void navigator.locks.request(key, lead);
    } else {
      void lead();
    }
  },
  channel: key => (typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(key))
};

/** Follow the server at `key` (its origin and base URL) from this tab, leading or listening. */
export function followShared(key: string, ask: Ask, sink: Sink, tabs: Tabs = browserTabs): { leading: () => boolean } {
  let leading = false;
  // The leader's news, in the order it had them (a restarted server's versions may be lower:
  // they start from its clock). This tab's own first read is shown only if no news came first.
  let streamed = false;
  const news = (state: SignInState, at: number) => {
    streamed = true;
    sink.changed(state, at);
  };
  const channel = tabs.channel(key);
  channel?.addEventListener('message', (event: Event) => {
    const m = (event as MessageEvent<Message>).data;
    if (m?.kind === 'state') {
      news(m.state, m.at);
    } else if (m?.kind === 'down') {
      sink.down(m.down);
    }
  });
  void (async () => {
    for (let failures = 1; !streamed; failures++) {
      try {
        const state = await ask(null, 0, new AbortController().signal);
        if (!streamed) {
          sink.changed(state, Date.now());
        }
        return;
      } catch {
        await sleeper(delay(failures, QUIET_WAIT, RETRY_MOST) * 1000, new AbortController().signal);
      }
    }
  })();
  tabs.lock(key, () => {
    leading = true;
    const follower = new Follower(ask, {
      changed: (state, at) => {
        news(state, at);
        channel?.postMessage({ kind: 'state', state, at } satisfies Message);
      },
      down: down => {
        sink.down(down);
        channel?.postMessage({ kind: 'down', down } satisfies Message);
      }
    });
    return follower.run(); // never ends while the tab is open: the lock is held
  });
  return { leading: () => leading };
}
