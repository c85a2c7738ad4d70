import { followShared, type Tabs } from '../share';
import type { SignInState } from '../state';
import { version as state } from './fixtures';

/** Tabs of one browser: one lock (a queue of would-be leaders), one channel to all. */
function browser() {
  const waiting: Array<() => Promise<void>> = [];
  let held = false;
  const listeners: Array<{ tab: number; fn: (e: Event) => void }> = [];
  const grant = () => {
    const next = waiting.shift();
    if (next && !held) {
      held = true;
      void next().finally(() => {
        held = false;
        grant();
      });
    }
  };
  let tabs = 0;
  const tab = (): Tabs => {
    const id = tabs++;
    return {
      lock: (_key, lead) => {
        waiting.push(lead);
        grant();
      },
      channel: () => ({
        postMessage: (data: unknown) =>
          listeners.filter(l => l.tab !== id).forEach(l => l.fn({ data } as MessageEvent)),
        addEventListener: (_type: string, fn: (e: Event) => void) => listeners.push({ tab: id, fn })
      })
    };
  };
  return { tab };
}

// The leader asks again a second after news at the soonest: fake timers move that second.
const flush = () => jest.advanceTimersByTimeAsync(1000);

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe('the tabs of one server', () => {
  it('hold one long-poll between them, and each hears every change', async () => {
    const b = browser();
    const polls: number[] = [];
    let release: (s: SignInState) => void = () => undefined;
    const ask = (tab: number) => (since: number | null) => {
      if (since === null) {
        return Promise.resolve(state(1)); // a tab's first read: answered at once
      }
      polls.push(tab);
      return new Promise<SignInState>(resolve => (release = resolve));
    };
    const seen: number[][] = [[], [], []];
    const tabs = [0, 1, 2].map(i =>
      followShared('k', ask(i), { changed: s => seen[i].push(s.version), down: () => undefined }, b.tab())
    );
    await flush();
    expect(tabs.map(t => t.leading())).toEqual([true, false, false]);
    expect(polls).toEqual([0]); // the leader only
    release(state(2));
    await flush();
    expect(seen.map(s => s[s.length - 1])).toEqual([2, 2, 2]);
    expect(polls).toEqual([0, 0]);
  });

  it('never show an older state after a newer one (a first read that crossed the news)', async () => {
    const b = browser();
    const leader = b.tab();
    let first: (s: SignInState) => void = () => undefined;
    followShared('k', (since) => (since === null ? Promise.resolve(state(3)) : new Promise(() => undefined)), {
      changed: () => undefined,
      down: () => undefined
    }, leader);
    await flush();
    const seen: number[] = [];
    const late = b.tab();
    followShared(
      'k',
      since => (since === null ? new Promise<SignInState>(resolve => (first = resolve)) : new Promise(() => undefined)),
      { changed: s => seen.push(s.version), down: () => undefined },
      late
    );
    // The leader's news (version 4) reaches the late tab before its own first read (version 3).
    (leader.channel('k') as { postMessage: (d: unknown) => void }).postMessage({ kind: 'state', state: state(4), at: 0 });
    first(state(3));
    await flush();
    expect(seen).toEqual([4]);
  });

  it('show the state of a restarted server, although its versions are lower', async () => {
    const b = browser();
    let release: (s: SignInState) => void = () => undefined;
    const seen: number[] = [];
    followShared(
      'k',
      since => (since === null ? Promise.resolve(state(1_000_000)) : new Promise(resolve => (release = resolve))),
      { changed: s => seen.push(s.version), down: () => undefined },
      b.tab()
    );
    await flush();
    release(state(5)); // the server restarted with its clock behind
    await flush();
    expect(seen[seen.length - 1]).toBe(5);
  });

  it('read the state again until they have it, when the first read fails', async () => {
    const b = browser();
    b.tab().lock('k', () => new Promise(() => undefined)); // another tab leads, and says nothing
    const seen: number[] = [];
    let tries = 0;
    followShared(
      'k',
      () => (++tries < 3 ? Promise.reject(new Error('refused')) : Promise.resolve(state(8))),
      { changed: s => seen.push(s.version), down: () => undefined },
      b.tab()
    );
    for (let i = 0; i < 10; i++) {
      await flush();
    }
    expect(tries).toBe(3);
    expect(seen).toEqual([8]);
  });
});
