import { Backoff, Follower, LONGPOLL, LONGPOLL_GRACE, QUIET_WAIT, RESTART_STEP, RETRY_MOST, delay } from '../follow';
import type { SignInState } from '../state';
import { version as state } from './fixtures';

/** A follower against scripted answers, on a clock that only the sleeps move. */
function scripted(answers: Array<SignInState | Error | 'hang'>, holds = 0) {
  let now = 1_000_000;
  const asks: Array<{ since: number | null; timeout: number; at: number }> = [];
  const changes: number[] = [];
  const downs: boolean[] = [];
  const sleeps: number[] = [];
  const held: { follower?: Follower } = {};
  const deadlines: number[] = [];
  const ask = async (since: number | null, timeout: number, signal: AbortSignal) => {
    asks.push({ since, timeout, at: now });
    now += holds * 1000; // the server holds the long-poll this long
    const next = answers.shift();
    if (next === undefined) {
      held.follower?.stop();
      throw new Error('done');
    }
    if (next instanceof Error) {
      throw next;
    }
    if (next === 'hang') {
      // A connection that died without a word: only the follower's deadline ends it.
      return new Promise<SignInState>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    return next;
  };
  const follower = new Follower(ask, {
    changed: s => changes.push(s.version),
    down: d => downs.push(d),
    now: () => now,
    sleep: async ms => {
      sleeps.push(ms);
      now += ms;
    },
    after: (ms, fire) => {
      deadlines.push(ms);
      const t = setTimeout(fire, 0); // at once, for the test
      return () => clearTimeout(t);
    }
  });
  held.follower = follower;
  return { follower, asks, changes, downs, sleeps, deadlines };
}

const spacing = (asks: Array<{ at: number }>) => asks.slice(1).map((a, i) => a.at - asks[i].at);

describe('the follower', () => {
  it('asks with the version it last saw, and again within a second after news', async () => {
    const f = scripted([state(5), state(6), state(7)]);
    await f.follower.run();
    expect(f.asks.map(a => a.since)).toEqual([null, 5, 6, 7]);
    expect(f.asks.every(a => a.timeout === LONGPOLL)).toBe(true);
    expect(f.changes).toEqual([5, 6, 7]);
    expect(f.sleeps).toEqual([1000, 1000, 1000]);
  });

  it('asks again at once after a long-poll the server held, with no timer', async () => {
    const f = scripted([state(5), state(5), state(5), state(6)], LONGPOLL);
    await f.follower.run();
    expect(f.sleeps).toEqual([]);
    expect(f.changes).toEqual([5, 6]);
  });

  it('never asks more than once a second, whatever the server answers at once', async () => {
    const same = scripted(Array.from({ length: 50 }, () => state(5)));
    await same.follower.run();
    expect(same.changes).toEqual([5]);
    const news = scripted(Array.from({ length: 50 }, (_, i) => state(i)));
    await news.follower.run();
    const mixed = scripted(Array.from({ length: 50 }, (_, i) => (i % 2 ? new Error('refused') : state(1))));
    await mixed.follower.run();
    for (const f of [same, news, mixed]) {
      expect(Math.min(...spacing(f.asks))).toBeGreaterThanOrEqual(QUIET_WAIT * 1000);
    }
  });

  it('gives up on an ask the server never answers, after its longest hold and the grace', async () => {
    const f = scripted(['hang', state(3)]);
    await f.follower.run();
    expect(f.deadlines[0]).toBe((LONGPOLL + LONGPOLL_GRACE) * 1000);
    expect(f.changes).toEqual([3]); // and asked again
  });

  it('backs off after failures, a second apart while the server may be restarting, and calls it down later', async () => {
    const f = scripted([...Array.from({ length: 30 }, () => new Error('refused')), state(9)]);
    await f.follower.run();
    expect(f.sleeps.slice(0, 3)).toEqual([1000, 1000, 1000]);
    expect(Math.max(...f.sleeps)).toBe(RETRY_MOST * 1000);
    const restarting = f.sleeps.slice(0, 20);
    expect(restarting.filter(ms => ms > RESTART_STEP * 1000)).toEqual([]);
    expect(f.downs).toEqual([true, false]);
    expect(f.changes).toEqual([9]);
  });

  it('follows on when showing a state fails', async () => {
    const seen: number[] = [];
    let n = 0;
    const answers = [state(1), state(2)];
    const follower: Follower = new Follower(
      async () => {
        const next = answers.shift();
        if (!next) {
          follower.stop();
          throw new Error('done');
        }
        return next;
      },
      {
        changed: s => {
          seen.push(s.version);
          if (n++ === 0) {
            throw new Error('a render failed');
          }
        },
        down: () => undefined,
        sleep: async () => undefined
      }
    );
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    await follower.run();
    quiet.mockRestore();
    expect(seen).toEqual([1, 2]);
  });
});

describe('the backoff', () => {
  it('is backoff.delay: doubling from the first wait up to the longest, never below the first', () => {
    expect([0, 1, 2, 3, 4, 10, 1000].map(n => delay(n, 0.25, 10))).toEqual([0.25, 0.25, 0.5, 1, 2, 10, 10]);
  });

  it('calls the server down only after the outage wait', () => {
    const b = new Backoff();
    expect(b.failed(0)[1]).toBe(false);
    expect(b.failed(19.9)[1]).toBe(false);
    expect(b.failed(20)).toEqual([1, true]);
    b.answered();
    expect(b.failed(100)).toEqual([0.25, false]);
  });
});
