// Drives GraphiQL in Debian's headless Chromium for tests/system/browser/test_graphiql_browser.py.
//
//   node driver.mjs [--screenshots DIR]
//
// Launches Chromium once (a fresh temporary profile), prints {"ready": true, ...}, then
// answers commands: one JSON object per line on stdin, one JSON object per line on
// stdout ({"ok": true, ...} or {"ok": false, "error": "..."}). Commands, by "cmd":
//
//   open {url, csp?}          a fresh browser context and page; opens url (GraphiQL) and
//                             waits for its editor. csp: a Content-Security-Policy to
//                             add to the page's response when the server sent none.
//   explorer                  opens the explorer plugin; answers {text} (what it lists).
//   headers {text}            types text into the Headers pane.
//   run {query, timeout?}     types the query, presses Run, waits for a response;
//                             answers {response} (the response pane, parsed).
//   subscribe {query}         types the subscription, presses Run, waits until the
//                             page's WebSocket sent `subscribe` after connection_ack.
//   response {contains, timeout?}  waits until the response pane contains the text.
//   stop                      presses Run again (Stop) and waits for `complete`.
//   report                    what the page did since open: every request, WebSockets,
//                             console errors and warnings, page errors, CSP violations.
//   close                     closes Chromium and exits.
//
// Text goes in as a user's paste would (keyboard.insertText into the focused editor),
// not through GraphiQL's internals.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
];
const EDITOR_TIMEOUT = 20_000;
const SETTLE_MS = 400;
const screenshotsArg = process.argv.indexOf('--screenshots');
const screenshots = screenshotsArg > 0 ? process.argv[screenshotsArg + 1] : null;

function send(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ARGS,
});

let session = null;
let opened = 0;

// Everything one page did, from open on.
class Session {
  constructor(number, context, page, origin) {
    this.number = number;
    this.context = context;
    this.page = page;
    this.origin = origin;
    this.requests = [];
    this.failed = [];
    this.badResponses = [];
    this.websockets = [];
    this.frames = [];
    this.console = [];
    this.pageErrors = [];
    this.shots = 0;
  }

  record() {
    const { context, page } = this;
    context.on('request', (request) =>
      this.requests.push({
        url: request.url(),
        method: request.method(),
        type: request.resourceType(),
      }),
    );
    context.on('requestfailed', (request) =>
      this.failed.push({ url: request.url(), error: request.failure()?.errorText }),
    );
    context.on('response', (response) => {
      if (response.status() >= 400) {
        this.badResponses.push({ url: response.url(), status: response.status() });
      }
    });
    page.on('websocket', (ws) => {
      this.websockets.push(ws.url());
      ws.on('framesent', (frame) => this.frames.push({ dir: 'sent', payload: String(frame.payload) }));
      ws.on('framereceived', (frame) =>
        this.frames.push({ dir: 'received', payload: String(frame.payload) }),
      );
    });
    page.on('console', (message) => {
      const type = message.type();
      if (type === 'error' || type === 'warning') {
        this.console.push({ type, text: message.text(), location: message.location() });
      }
    });
    page.on('pageerror', (error) => this.pageErrors.push(String(error)));
  }

  async screenshot(name) {
    if (!screenshots) return;
    mkdirSync(screenshots, { recursive: true });
    this.shots += 1;
    const file = `${this.number}-${String(this.shots).padStart(2, '0')}-${name}.png`;
    await this.page.screenshot({ path: join(screenshots, file) });
  }

  messages() {
    const parsed = [];
    for (const frame of this.frames) {
      try {
        parsed.push({ dir: frame.dir, ...JSON.parse(frame.payload) });
      } catch {
        parsed.push({ dir: frame.dir, unparsed: frame.payload });
      }
    }
    return parsed;
  }
}

async function until(predicate, timeout, what) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Replace an editor's whole text the way a user would: click, select all, paste.
async function typeInto(editor, text) {
  const page = session.page;
  await editor.locator('.CodeMirror-lines').first().click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.insertText(text);
  // GraphiQL reparses an editor's text a moment after the last keystroke (debounced);
  // a person pauses at least that long before pressing Run.
  await page.waitForTimeout(SETTLE_MS);
}

function queryEditor() {
  return session.page.locator('.graphiql-query-editor');
}

// The Headers pane: its tab, then the visible editor tool.
async function headersEditor() {
  const page = session.page;
  const tab = page.getByRole('button', { name: 'Headers', exact: true });
  const selected = await tab.getAttribute('aria-selected');
  if (selected !== 'true') await tab.click();
  return page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden)');
}

// The response pane's text (CodeMirror renders only what is in view: read its model).
async function responseText() {
  return session.page.evaluate(() => {
    const element = document.querySelector('.graphiql-response .CodeMirror');
    return element && element.CodeMirror ? element.CodeMirror.getValue() : '';
  });
}

async function pressRun() {
  await session.page.locator('.graphiql-execute-button').click();
}

const commands = {
  async open({ url, csp }) {
    if (session) await session.context.close();
    const context = await browser.newContext();
    const page = await context.newPage();
    const origin = new URL(url).origin;
    opened += 1;
    session = new Session(opened, context, page, origin);
    session.record();
    // Every violation the page's own policy reports (Chrome also logs each to the console).
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__cspViolations.push(
          `${event.effectiveDirective} blocked ${event.blockedURI || 'inline'}` +
            ` at ${event.sourceFile || '?'}:${event.lineNumber}`,
        );
      });
    });
    let cspSource = 'server';
    if (csp) {
      // Only the page itself, and only when the server did not send a policy.
      await page.route(url, async (route) => {
        const response = await route.fetch();
        const headers = response.headers();
        if (!headers['content-security-policy']) {
          headers['content-security-policy'] = csp;
          cspSource = 'harness';
        }
        await route.fulfill({ response, headers });
      });
    }
    const response = await page.goto(url, { waitUntil: 'load' });
    await queryEditor().locator('.CodeMirror').waitFor({ state: 'visible', timeout: EDITOR_TIMEOUT });
    // The schema arrived when the documentation explorer can show it; GraphiQL fetched it.
    await session.screenshot('opened');
    return {
      status: response.status(),
      title: await page.title(),
      contentType: response.headers()['content-type'],
      csp: (await response.allHeaders())['content-security-policy'] || null,
      cspSource: csp ? cspSource : 'server',
    };
  },

  async explorer({ timeout = 10_000 }) {
    const page = session.page;
    await page.getByRole('button', { name: 'Show GraphiQL Explorer', exact: true }).click();
    const root = page.locator('.graphiql-explorer-root');
    await root.waitFor({ state: 'visible', timeout });
    await session.screenshot('explorer');
    return { text: await root.innerText() };
  },

  async headers({ text }) {
    await typeInto(await headersEditor(), text);
    await session.screenshot('headers');
    return {};
  },

  async run({ query, timeout = 15_000 }) {
    await typeInto(queryEditor(), query);
    const before = await responseText();
    await pressRun();
    const text = await until(
      async () => {
        const now = await responseText();
        return now && now !== before ? now : null;
      },
      timeout,
      'a response in the response pane',
    );
    await session.screenshot('ran');
    return { response: JSON.parse(text) };
  },

  async subscribe({ query, timeout = 15_000 }) {
    await typeInto(queryEditor(), query);
    const frames = session.frames.length;
    await pressRun();
    await until(
      () => {
        const recent = session.messages().slice(frames);
        const acked = recent.some((m) => m.dir === 'received' && m.type === 'connection_ack');
        return acked && recent.some((m) => m.dir === 'sent' && m.type === 'subscribe');
      },
      timeout,
      'connection_ack and subscribe on the page\'s WebSocket',
    );
    return { websockets: session.websockets };
  },

  async response({ contains, timeout = 15_000 }) {
    const text = await until(
      async () => {
        const now = await responseText();
        return now.includes(contains) ? now : null;
      },
      timeout,
      `${JSON.stringify(contains)} in the response pane`,
    );
    await session.screenshot('response');
    return { response: JSON.parse(text) };
  },

  async stop({ timeout = 10_000 }) {
    const frames = session.frames.length;
    await pressRun();
    await until(
      () => session.messages().slice(frames).some((m) => m.dir === 'sent' && m.type === 'complete'),
      timeout,
      '`complete` on the page\'s WebSocket',
    );
    return {};
  },

  async report() {
    const reported = await session.page.evaluate(() => window.__cspViolations || []);
    const logged = session.console
      .filter((m) => /Content Security Policy/i.test(m.text))
      .map((m) => m.text);
    const cspViolations = [...reported, ...logged];
    return {
      origin: session.origin,
      requests: session.requests,
      failed: session.failed,
      badResponses: session.badResponses,
      websockets: session.websockets,
      messages: session.messages(),
      console: session.console,
      pageErrors: session.pageErrors,
      cspViolations,
    };
  },

  async close() {
    await browser.close();
    return {};
  },
};

send({ ready: true, browser: browser.version() });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
    const handler = commands[request.cmd];
    if (!handler) throw new Error(`unknown command ${request.cmd}`);
    send({ ok: true, ...(await handler(request)) });
  } catch (error) {
    const answer = { ok: false, error: String(error && error.stack ? error.stack : error) };
    if (session) {
      await session.screenshot('error').catch(() => {});
      // What the page was doing: enough to tell why without rerunning.
      answer.page = {
        websockets: session.websockets,
        messages: session.messages().slice(-10),
        console: session.console,
        pageErrors: session.pageErrors,
        response: await responseText().catch(() => null),
      };
    }
    send(answer);
  }
  if (request && request.cmd === 'close') break;
}
// stdin closed or `close`: stdin's reader would keep node alive.
await browser.close().catch(() => {});
process.exit(0);
