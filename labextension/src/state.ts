/**
 * The sign-in state as the server's `ts_notebook/api/status` sends it (never a token), and how
 * the status bar words it. Pure: no DOM, no JupyterLab, no clock of its own.
 */

/** What `GET ts_notebook/api/status` answers (`Snapshot.to_wire` without the access token). */
export interface SignInState {
  version: number;
  signed_in: boolean;
  login_pending: boolean;
  configured: boolean;
  error: string | null;
  env: string;
  api_url: string;
  sim_api_url: string;
  /** Where the sign-in is kept across restarts, in words. */
  kept: string;
  /** Only while signed in: */
  display_name?: string;
  scopes?: string[];
  expires_in?: number;
  /** Absent when the sign-in has no refresh token: it ends when the access token expires. */
  renews_in?: number;
}

/** A reply's body as a state, or an error when it is none (it then counts as a failed ask). */
export function readState(body: unknown): SignInState {
  const s = body as SignInState | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    !Number.isSafeInteger(s.version) ||
    typeof s.signed_in !== 'boolean' ||
    (s.signed_in && !Number.isFinite(s.expires_in))
  ) {
    throw new Error('not a sign-in state');
  }
  return s;
}

/** One answer of the server, and when (`Date.now()`) it arrived. */
export interface Reading {
  state: SignInState;
  at: number;
}

/**
 * - `signed-in`: a sign-in `ts.session` uses;
 * - `signed-out`: nobody is signed in, and nothing went wrong;
 * - `pending`: a sign-in was started and waits for TradeStation's page;
 * - `ended`: the sign-in ended for good (revoked, past its 24 hours, a refused renewal) or the
 *   last sign-in failed: only signing in again helps;
 * - `unconfigured`: the server has no usable TradeStation key;
 * - `unreachable`: the Jupyter server has not answered for longer than a restart;
 * - `loading`: the page has not heard from the server yet.
 */
export type Tone = 'signed-in' | 'signed-out' | 'pending' | 'ended' | 'unconfigured' | 'unreachable' | 'loading';

export function tone(reading: Reading | null, down = false): Tone {
  if (down) {
    return 'unreachable';
  }
  if (reading === null) {
    return 'loading';
  }
  const s = reading.state;
  if (s.signed_in) {
    return 'signed-in';
  }
  if (!s.configured) {
    return 'unconfigured';
  }
  if (s.login_pending) {
    return 'pending';
  }
  return s.error ? 'ended' : 'signed-out';
}

/** LIVE or SIM: which API `ts.session` talks to. */
export function apiName(state: SignInState): string {
  return state.env === 'sim' ? 'SIM' : 'LIVE';
}

/** Whole minutes the access token has left at `now` (0 once it has expired). */
export function minutesLeft(reading: Reading, now: number): number {
  const left = reading.at + (reading.state.expires_in ?? 0) * 1000 - now;
  return Math.max(0, Math.floor(left / 60_000));
}

/** The status bar's text. */
export function label(reading: Reading | null, now: number, down = false): string {
  switch (tone(reading, down)) {
    case 'signed-in': {
      const r = reading as Reading;
      const name = r.state.display_name || 'signed in';
      return `TradeStation · ${name} · ${apiName(r.state)} · ${minutesLeft(r, now)} min`;
    }
    case 'pending':
      return 'TradeStation · signing in…';
    case 'ended':
      return 'TradeStation · sign in again';
    case 'unconfigured':
      return 'TradeStation · no key set';
    case 'unreachable':
      return 'TradeStation · server not answering';
    case 'loading':
      return 'TradeStation';
    default:
      return 'TradeStation · signed out';
  }
}

/** A wall-clock time as a person reads it: "14:05". */
export function clock(at: number): string {
  const d = new Date(at);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

function inMinutes(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  return minutes < 1 ? 'under a minute' : `${minutes} min`;
}

/** What the popup (and "Show TradeStation status") says: rows of facts, and what to do. */
export interface Details {
  title: string;
  rows: [string, string][];
  advice: string;
}

export function details(reading: Reading | null, now: number, down = false): Details {
  const t = tone(reading, down);
  if (t === 'unreachable' || t === 'loading' || reading === null) {
    return {
      title: 'TradeStation',
      rows: [],
      advice:
        t === 'loading'
          ? 'Reading the sign-in state from this Jupyter server…'
          : 'This Jupyter server is not answering. The status comes back by itself when it does.'
    };
  }
  const s = reading.state;
  const rows: [string, string][] = [];
  if (t === 'signed-in') {
    const expires = reading.at + (s.expires_in ?? 0) * 1000;
    const renews = reading.at + (s.renews_in ?? 0) * 1000;
    rows.push(['Signed in as', s.display_name || '']);
    rows.push(['API', `${apiName(s)} · ${s.env === 'sim' ? s.sim_api_url : s.api_url}`]);
    rows.push(['Scopes', (s.scopes ?? []).join(' ')]);
    rows.push(['Token valid', `${inMinutes(expires - now)} more (until ${clock(expires)})`]);
    if (s.renews_in === undefined) {
      rows.push(['Renews', 'never: no refresh token (sign in again when the token expires)']);
    } else {
      rows.push(['Renews', renews > now ? `by itself at ${clock(renews)}` : 'by itself, now']);
    }
    if (s.kept) {
      rows.push(['Kept', s.kept]);
    }
    if (s.error) {
      rows.push(['Last error', s.error]); // a sign-in or renewal that failed meanwhile
    }
  }
  const advice = {
    'signed-in': 'Every notebook of this server uses this sign-in through ts.session.',
    'signed-out': 'Click Sign in: TradeStation\'s page opens in a new tab. No kernel is needed.',
    pending: 'Finish signing in on TradeStation\'s page (the tab that opened), or click Sign in again.',
    ended: `${s.error} Or click Sign in below.`,
    unconfigured: s.error || 'This Jupyter server has no TradeStation key: set TS_CLIENT_ID and restart it.'
  }[t];
  const title = {
    'signed-in': `TradeStation · ${apiName(s)}`,
    'signed-out': 'TradeStation · signed out',
    pending: 'TradeStation · signing in',
    ended: 'TradeStation · sign in again',
    unconfigured: 'TradeStation · no key set'
  }[t];
  return { title, rows, advice };
}
