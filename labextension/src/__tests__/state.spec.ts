import { details, label, minutesLeft, readState, tone, type Reading, type SignInState } from '../state';
import { state } from './fixtures';

const AT = Date.UTC(2026, 11, 4, 14, 0, 0);

const signedIn = (over: Partial<SignInState> = {}): Reading => ({
  state: state({
    signed_in: true,
    display_name: 'analyst',
    scopes: ['openid', 'MarketData'],
    expires_in: 17 * 60 + 30,
    renews_in: 12 * 60,
    ...over
  }),
  at: AT
});

describe('the label', () => {
  it('says who, which API and the minutes left', () => {
    expect(label(signedIn(), AT)).toBe('TradeStation · analyst · LIVE · 17 min');
    expect(label(signedIn({ env: 'sim' }), AT)).toBe('TradeStation · analyst · SIM · 17 min');
  });

  it('counts the minutes down from the moment of the reading, never below zero', () => {
    expect(minutesLeft(signedIn(), AT + 5 * 60_000)).toBe(12);
    expect(label(signedIn(), AT + 60 * 60_000)).toBe('TradeStation · analyst · LIVE · 0 min');
  });

  it('tells signed out, signing in, ended, no key and no server apart', () => {
    const r = (over: Partial<SignInState>): Reading => ({ state: state(over), at: AT });
    expect(label(r({}), AT)).toBe('TradeStation · signed out');
    expect(label(r({ login_pending: true }), AT)).toBe('TradeStation · signing in…');
    expect(label(r({ error: 'Your TradeStation sign-in has ended (revoked).' }), AT)).toBe(
      'TradeStation · sign in again'
    );
    expect(tone(r({ error: 'x' }))).toBe('ended');
    expect(label(r({ configured: false, error: 'No key' }), AT)).toBe('TradeStation · no key set');
    expect(label(null, AT)).toBe('TradeStation');
    expect(label(null, AT, true)).toBe('TradeStation · server not answering');
    expect(label(signedIn(), AT, true)).toBe('TradeStation · server not answering');
  });

  it('puts a pending sign-in before an old error, and a sign-in before both', () => {
    expect(tone({ state: state({ login_pending: true, error: 'old' }), at: AT })).toBe('pending');
    expect(tone(signedIn({ error: 'old', login_pending: true }))).toBe('signed-in');
  });
});

describe('the details', () => {
  it('give the scopes, the API, where it is kept and when it renews', () => {
    const d = details(signedIn(), AT);
    const rows = Object.fromEntries(d.rows);
    expect(rows['Signed in as']).toBe('analyst');
    expect(rows['API']).toBe('LIVE · https://api.tradestation.com/v3');
    expect(rows['Scopes']).toBe('openid MarketData');
    expect(rows['Token valid']).toMatch(/^18 min more \(until \d\d:\d\d\)$/);
    expect(rows['Renews']).toMatch(/^by itself at \d\d:\d\d$/);
    expect(rows['Kept']).toBe('Kept in the system keyring.');
  });

  it('say when a sign-in with no refresh token will not renew', () => {
    const rows = Object.fromEntries(details(signedIn({ renews_in: undefined }), AT).rows);
    expect(rows['Renews']).toMatch(/^never: no refresh token/);
  });

  it('show the SIM address on SIM', () => {
    expect(Object.fromEntries(details(signedIn({ env: 'sim' }), AT).rows)['API']).toBe(
      'SIM · https://sim-api.tradestation.com/v3'
    );
  });

  it('say why a sign-in ended and what to do', () => {
    const d = details({ state: state({ error: 'Your TradeStation sign-in has ended (revoked).' }), at: AT }, AT);
    expect(d.title).toBe('TradeStation · sign in again');
    expect(d.advice).toBe('Your TradeStation sign-in has ended (revoked). Or click Sign in below.');
    expect(d.rows).toEqual([]);
  });

  it('say a server with no key needs one', () => {
    expect(details({ state: state({ configured: false, error: null }), at: AT }, AT).advice).toMatch(/TS_CLIENT_ID/);
  });
});

describe('a reply', () => {
  it('is a state only when it reads as one', () => {
    expect(readState(state({ version: 7 })).version).toBe(7);
    for (const bad of [null, 'text', [], {}, { version: 1.5, signed_in: false }, { version: 1, signed_in: 'yes' }]) {
      expect(() => readState(bad)).toThrow('not a sign-in state');
    }
    expect(() => readState(state({ signed_in: true }))).toThrow(); // signed in, but for how long?
  });

  it('shows an error that came while still signed in', () => {
    const rows = Object.fromEntries(details(signedIn({ error: 'The sign-in failed: access_denied' }), AT).rows);
    expect(rows['Last error']).toBe('The sign-in failed: access_denied');
  });
});
