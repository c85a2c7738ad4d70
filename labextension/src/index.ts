/**
 * TradeStation in JupyterLab 4 and Notebook 7: an item for the server's one sign-in (in the
 * status bar; at the top of the page in Notebook 7, which has none), its popup, and three
 * commands in the palette and the Settings menu. The server owns the sign-in, so signing in
 * needs no kernel: the login page opens in a new tab and completes through the same callback.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification, showDialog, Dialog } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { askStatus, signInUrl, signOut } from './api';
import { followShared } from './share';
import { Popup, StatusItem, StatusModel, renderDetails } from './view';

const PLUGIN = 'ts-notebook:plugin';
export const COMMANDS = {
  signIn: 'ts-notebook:sign-in',
  signOut: 'ts-notebook:sign-out',
  show: 'ts-notebook:show-status'
};
// The minutes left are counted down between the server's news.
const TICK_MS = 15_000;

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN,
  description: 'TradeStation sign-in in the status bar, the command palette and the Settings menu.',
  autoStart: true,
  optional: [IStatusBar, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null
  ) => {
    const server = ServerConnection.makeSettings();
    const model = new StatusModel();
    let popup: Popup | null = null;
    let visible = true;

    const signIn = () => {
      // Opened at the click, so no popup blocker stops it; the page sends the tab on to TradeStation.
      // noopener: TradeStation's pages get no handle on this one.
      window.open(signInUrl(server), '_blank', 'noopener');
    };
    const doSignOut = async () => {
      let said: string;
      try {
        said = await signOut(server);
      } catch (error) {
        said = `Not signed out: this Jupyter server could not be reached (${error}). Try again.`;
      }
      Notification.info(said, { autoClose: 5000 });
    };
    const actions = { signIn, signOut: () => void doSignOut() };

    const item = new StatusItem(model, () => togglePopup());
    item.id = 'ts-notebook-status';
    const togglePopup = () => {
      if (popup && !popup.isDisposed) {
        popup.dispose();
        popup = null;
        return;
      }
      popup = new Popup(model, item.node, actions);
      Widget.attach(popup, document.body);
    };

    if (statusBar) {
      statusBar.registerStatusItem('ts-notebook:status', {
        item,
        align: 'left',
        rank: 1000,
        isActive: () => visible,
        activeStateChanged: model.changed
      });
    } else {
      app.shell.add(item, 'top', { rank: 1000 });
    }

    app.commands.addCommand(COMMANDS.signIn, {
      label: 'Sign in to TradeStation',
      caption: "Open TradeStation's sign-in page in a new tab",
      execute: signIn
    });
    app.commands.addCommand(COMMANDS.signOut, {
      label: 'Sign out of TradeStation',
      caption: 'Sign every kernel of this server out and revoke the sign-in',
      isEnabled: () => model.tone === 'signed-in',
      execute: doSignOut
    });
    app.commands.addCommand(COMMANDS.show, {
      label: 'Show TradeStation status',
      execute: async () => {
        if (visible && item.isAttached && item.isVisible) {
          if (!popup || popup.isDisposed) {
            togglePopup();
          }
          return;
        }
        const body = new Widget({ node: renderDetails(model, actions, Date.now()) });
        await showDialog({ title: 'TradeStation', body, buttons: [Dialog.okButton({ label: 'Close' })] });
      }
    });
    if (palette) {
      for (const command of Object.values(COMMANDS)) {
        palette.addItem({ command, category: 'TradeStation' });
      }
    }

    if (registry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        visible = settings.get('showStatusItem').composite !== false;
        if (!statusBar) {
          item.setHidden(!visible);
        }
        model.tick();
      };
      registry
        .load(PLUGIN)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason => console.error('ts-notebook: settings not loaded', reason));
    }

    followShared(`ts-notebook:${new URL(server.baseUrl, location.href).href}`, askStatus(server), {
      changed: (state, at) => {
        model.update({ state, at }, false);
        app.commands.notifyCommandChanged(COMMANDS.signOut);
      },
      down: down => {
        model.update(model.reading, down);
        app.commands.notifyCommandChanged(COMMANDS.signOut);
      }
    });
    window.setInterval(() => model.tick(), TICK_MS);
  }
};

export default plugin;
