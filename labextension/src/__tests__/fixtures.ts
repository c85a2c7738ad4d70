import type { SignInState } from '../state';

/** A signed-out state as the server sends it, with `over` changed. */
export function state(over: Partial<SignInState> = {}): SignInState {
  return {
    version: 1,
    signed_in: false,
    login_pending: false,
    configured: true,
    error: null,
    env: 'live',
    api_url: 'https://api.tradestation.com/v3',
    sim_api_url: 'https://sim-api.tradestation.com/v3',
    kept: 'Kept in the system keyring.',
    ...over
  };
}

/** The state at `version`. */
export const version = (v: number): SignInState => state({ version: v });
