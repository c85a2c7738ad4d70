/**
 * The status item and its popup: DOM only, fed by `StatusModel`.
 */
import { Signal, type ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { details, label, tone, type Reading, type Tone } from './state';

/** The last reading, and whether the server is down; `changed` on each news or minute. */
export class StatusModel {
  reading: Reading | null = null;
  down = false;
  private readonly _changed = new Signal<this, void>(this);

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get tone(): Tone {
    return tone(this.reading, this.down);
  }

  update(reading: Reading | null, down: boolean): void {
    this.reading = reading;
    this.down = down;
    this._changed.emit();
  }

  /** Re-render (the minutes left go down by themselves). */
  tick(): void {
    this._changed.emit();
  }
}

export interface Actions {
  signIn: () => void;
  signOut: () => void;
}

/** The popup's body: the facts, what to do, and the buttons. */
export function renderDetails(model: StatusModel, actions: Actions, now: number): HTMLElement {
  const d = details(model.reading, now, model.down);
  const body = document.createElement('div');
  body.className = 'ts-notebook-details';
  body.dataset.tone = model.tone;
  const title = document.createElement('div');
  title.className = 'ts-notebook-details-title';
  title.textContent = d.title;
  body.appendChild(title);
  if (d.rows.length) {
    const table = document.createElement('table');
    for (const [key, value] of d.rows) {
      const row = table.insertRow();
      const th = document.createElement('th');
      th.textContent = key;
      row.appendChild(th);
      row.insertCell().textContent = value;
    }
    body.appendChild(table);
  }
  const advice = document.createElement('p');
  advice.className = 'ts-notebook-advice';
  advice.textContent = d.advice;
  body.appendChild(advice);
  const t = model.tone;
  if (t !== 'unreachable' && t !== 'unconfigured' && t !== 'loading') {
    const buttons = document.createElement('div');
    buttons.className = 'ts-notebook-buttons';
    const signedIn = t === 'signed-in';
    const button = document.createElement('button');
    button.className = `jp-Dialog-button jp-mod-styled ${signedIn ? 'jp-mod-warn ts-notebook-signout' : 'jp-mod-accept ts-notebook-signin'}`;
    button.textContent = signedIn ? 'Sign out' : 'Sign in';
    button.onclick = signedIn ? actions.signOut : actions.signIn;
    buttons.appendChild(button);
    body.appendChild(buttons);
  }
  return body;
}

/** The item: "TradeStation · analyst · LIVE · 17 min". */
export class StatusItem extends Widget {
  constructor(
    private readonly model: StatusModel,
    onClick: () => void
  ) {
    super();
    this.addClass('ts-notebook-status-item');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', onClick);
    this.node.addEventListener('keydown', e => {
      if (e.key === 'Enter' || e.key === ' ') {
        onClick();
      }
    });
    model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    const m = this.model;
    this.node.dataset.tone = m.tone;
    this.node.dataset.env = m.reading?.state.env ?? '';
    this.node.textContent = label(m.reading, Date.now(), m.down);
    this.node.title = 'TradeStation sign-in: click for details';
  }
}

/** A small box by the item (above it in the status bar, below it at the top of the page),
 * closed by a click elsewhere, Escape, or its button. It follows the state while open. */
export class Popup extends Widget {
  constructor(
    private readonly model: StatusModel,
    private readonly anchor: HTMLElement,
    private readonly actions: Actions
  ) {
    super();
    this.addClass('ts-notebook-popup');
    this.node.setAttribute('role', 'dialog');
    this.node.setAttribute('aria-label', 'TradeStation sign-in');
    model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    const act = (f: () => void) => () => {
      f();
      this.dispose();
    };
    this.node.replaceChildren(
      renderDetails(this.model, { signIn: act(this.actions.signIn), signOut: act(this.actions.signOut) }, Date.now())
    );
    if (this.isAttached) {
      this.place(); // its size may have changed
    }
  }

  protected onAfterAttach(): void {
    this.place();
    document.addEventListener('mousedown', this, true);
    document.addEventListener('keydown', this, true);
  }

  private place(): void {
    const r = this.anchor.getBoundingClientRect();
    const style = this.node.style;
    // By the item, inside the window whichever side of the page the item is on.
    style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - this.node.offsetWidth - 4))}px`;
    if (r.top > window.innerHeight / 2) {
      style.bottom = `${window.innerHeight - r.top + 4}px`;
    } else {
      style.top = `${r.bottom + 4}px`;
    }
  }

  protected onBeforeDetach(): void {
    document.removeEventListener('mousedown', this, true);
    document.removeEventListener('keydown', this, true);
  }

  handleEvent(event: Event): void {
    if (event.type === 'keydown' && (event as KeyboardEvent).key === 'Escape') {
      this.dispose();
    } else if (event.type === 'mousedown') {
      const target = event.target as Node;
      if (!this.node.contains(target) && !this.anchor.contains(target)) {
        this.dispose();
      }
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this.render, this);
    if (this.isAttached) {
      Widget.detach(this);
    }
    super.dispose();
  }
}
