/**
 * Following the server's sign-in state with the long-poll every kernel uses (the contract of
 * `ts_notebook.longpoll`): ask with `since` = the version last seen; the server answers at the
 * next change or after `timeout` seconds. The numbers below are that module's (a Python test
 * reads them here), so the browser and the kernels back off alike; the browser adds a floor
 * of one ask a second.
 */
import type { SignInState } from './state';

/** Seconds the server may hold a long-poll (`longpoll.LONGPOLL`), and how much longer an ask
 * waits before it calls the connection dead (`longpoll.LONGPOLL_GRACE`). */
export const LONGPOLL = 25;
export const LONGPOLL_GRACE = 10;
/** After a failure: the first wait, doubling up to the longest (`longpoll.RETRY_FIRST`, `RETRY_MOST`). */
export const RETRY_FIRST = 0.25;
export const RETRY_MOST = 10;
/** While the server may be restarting, at most this apart (`longpoll.RESTART_STEP`)... */
export const RESTART_STEP = 1;
/** ...for this long, before it is called down (`longpoll.OUTAGE_WAIT`). */
export const OUTAGE_WAIT = 20;
/** No ask comes sooner than this after the one before: whatever the server answers (news, no
 * news, errors), never more than one request a second. */
export const QUIET_WAIT = 1;

/** `backoff.delay`: `first`, doubling at each failure in a row, at most `most`. */
export function delay(failures: number, first: number, most: number): number {
  return Math.min(most, first * 2 ** Math.min(Math.max(failures, 1) - 1, 32));
}

/** `longpoll.Follower`: when to ask again after a failure, and when the server is down. */
export class Backoff {
  failures = 0;
  private downSince = 0;

  answered(): void {
    this.failures = 0;
  }

  /** A failure at `now` (seconds): [seconds to wait, whether the server is down]. */
  failed(now: number): [number, boolean] {
    this.failures += 1;
    if (this.failures === 1) {
      this.downSince = now;
    }
    const wait = delay(this.failures, RETRY_FIRST, RETRY_MOST);
    if (now - this.downSince < OUTAGE_WAIT) {
      return [Math.min(wait, RESTART_STEP), false];
    }
    return [wait, true];
  }
}

/** One long-poll: the state newer than `since` (null: the state now), within `timeout` seconds. */
export type Ask = (since: number | null, timeout: number, signal: AbortSignal) => Promise<SignInState>;

export interface FollowOptions {
  /** Called with each new state, and when it arrived. */
  changed: (state: SignInState, at: number) => void;
  /** Called when the server is called down (true) and when it answers again (false). */
  down: (down: boolean) => void;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Calls `fire` after `ms` unless the returned function is called first. */
  after?: (ms: number, fire: () => void) => () => void;
}

export function sleeper(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Follows the state until `stop()`: one request at a time, never a busy loop. */
export class Follower {
  private readonly abort = new AbortController();
  private readonly backoff = new Backoff();
  private since: number | null = null;
  private isDown = false;

  constructor(
    private readonly ask: Ask,
    private readonly options: FollowOptions
  ) {}

  /** Runs until `stop()`; resolves then (never rejects: whatever happens, it follows on). */
  async run(): Promise<void> {
    const now = this.options.now ?? Date.now;
    const sleep = this.options.sleep ?? sleeper;
    const after = this.options.after ?? timer;
    const stop = this.abort.signal;
    while (!stop.aborted) {
      const asked = now();
      let wait = 0;
      // Each ask gives up after the longest hold and a grace, as the kernels' do: a connection
      // that died without a word (a laptop that slept) must not hold the tab, or every tab.
      const one = new AbortController();
      const stopIt = () => one.abort();
      stop.addEventListener('abort', stopIt);
      const cancel = after((LONGPOLL + LONGPOLL_GRACE) * 1000, stopIt);
      try {
        const state = await this.ask(this.since, LONGPOLL, one.signal);
        this.backoff.answered();
        this.setDown(false);
        if (state.version !== this.since) {
          this.since = state.version;
          tell(() => this.options.changed(state, now()));
        }
      } catch {
        if (stop.aborted) {
          break;
        }
        const [backoff, down] = this.backoff.failed(now() / 1000);
        this.setDown(down);
        wait = backoff * 1000;
      } finally {
        cancel();
        stop.removeEventListener('abort', stopIt);
      }
      // Whatever the server answers, never more than one ask a second. A long-poll the server
      // held asks again at once: no timer, which a browser slows down in a background tab.
      wait = Math.max(wait, QUIET_WAIT * 1000 - (now() - asked));
      if (wait > 0) {
        await sleep(wait, stop);
      }
    }
  }

  stop(): void {
    this.abort.abort();
  }

  private setDown(down: boolean): void {
    if (down !== this.isDown) {
      this.isDown = down;
      tell(() => this.options.down(down));
    }
  }
}

/** Call a listener; its failure is logged, and following goes on. */
function tell(listener: () => void): void {
  try {
    listener();
  } catch (error) {
    console.error('ts-notebook: the sign-in state was not shown', error);
  }
}

function timer(ms: number, fire: () => void): () => void {
  const t = setTimeout(fire, ms);
  return () => clearTimeout(t);
}
