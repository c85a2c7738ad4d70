/**
 * The server's own routes, with the Jupyter session: `ServerConnection` sends its cookies, the
 * token of a token-authenticated page, and the XSRF header on every POST. Nothing here ever
 * carries a TradeStation token: the status route leaves it out.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Ask } from './follow';
import { readState } from './state';

const ROUTES = 'ts_notebook';

function route(settings: ServerConnection.ISettings, ...path: string[]): string {
  return URLExt.join(settings.baseUrl, ROUTES, ...path);
}

/** The long-poll of `GET ts_notebook/api/status`. */
export function askStatus(settings: ServerConnection.ISettings): Ask {
  return async (since, timeout, signal) => {
    let url = route(settings, 'api', 'status');
    if (since !== null) {
      url += URLExt.objectToQueryString({ since: String(since), timeout: String(timeout) });
    }
    const reply = await ServerConnection.makeRequest(url, { signal, cache: 'no-store' }, settings);
    if (!reply.ok) {
      throw new ServerConnection.ResponseError(reply);
    }
    return readState(await reply.json());
  };
}

/** Where a sign-in starts: the page that sends the browser on to TradeStation. */
export function signInUrl(settings: ServerConnection.ISettings): string {
  return route(settings, 'login');
}

export interface SignOutReply {
  was_signed_in?: boolean;
  revoke_failure?: string | null;
  message?: string;
}

/** `POST ts_notebook/api/logout`: every kernel of this server is signed out. */
export async function signOut(settings: ServerConnection.ISettings): Promise<string> {
  const reply = await ServerConnection.makeRequest(route(settings, 'api', 'logout'), { method: 'POST' }, settings);
  let body: SignOutReply = {};
  try {
    body = (await reply.json()) as SignOutReply;
  } catch {
    // not JSON: said below by the status
  }
  if (!reply.ok) {
    return `Not signed out: ${body.message || `the server answered ${reply.status}`}. Try again.`;
  }
  if (!body.was_signed_in) {
    return 'Not signed in to TradeStation; nothing to sign out.';
  }
  if (body.revoke_failure) {
    return (
      'Signed out of TradeStation: forgotten here, but revoking it at TradeStation failed ' +
      `(${body.revoke_failure}), so it may stay valid there.`
    );
  }
  return 'Signed out of TradeStation (the sign-in was revoked).';
}
