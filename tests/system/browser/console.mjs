// Drives the web console (api/static/console) in Debian's headless Chromium for
// tests/system/browser/test_console_journeys.py; started and spoken to like driver.mjs
// (tests/system/browser/conftest.py: one JSON command per line in, one answer out).
//
//   node console.mjs
//
// A locator is {within?, role?, name?, label?, selector?, text?, exact?}: by ARIA role
// and accessible name, by label, or by CSS selector (optionally with text), inside
// `within` (a CSS selector). Commands, by "cmd":
//
//   open {url, width?, height?}   a fresh context (viewport 1280x800 unless given); opens
//                                 url and waits until the console is ready (html[data-ready])
//   click {...locator}            clicks it            fill {...locator, value}  fills it
//   select {...locator, value}    picks an option      check {...locator}        ticks it
//   upload {...locator, filename, base64}  puts a file into a file input
//   press {key}                   a key, to whatever has focus
//   type {text}                   types text, to whatever has focus
//   wait {...locator, timeout?}   until it is visible; answers {text}
//   reload                        reloads the page (the tab's sessionStorage stays), waits until ready
//   until {expression, timeout?}  until the expression (evaluated in the page) is truthy
//   eval {expression}             evaluates it in the page; answers {value}
//   drawn                         the console:drawn events (live chart points) so far
//   focused                       the focused element: {tag, text, label}
//   viewport {width, height}      resizes the page
//   offline {on}                  takes the browser's network away, closing the page's open
//                                 WebSockets as a lost network would (Chromium's offline mode
//                                 leaves open ones be), or gives it back
//   screenshot {path, fullPage?}  a PNG of the page
//   metrics                       the tab's memory (Chrome's Performance.getMetrics, after
//                                 a garbage collection): JSHeapUsedSize, JSHeapTotalSize, Nodes
//   report                        what the page did: requests (with transferred sizes),
//                                 WebSockets and frames, console messages, page errors,
//                                 CSP violations
//   close                         closes Chromium and exits
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];
const READY_TIMEOUT = 20_000;
const ACTION_TIMEOUT = 15_000;

const send = (message) => process.stdout.write(JSON.stringify(message) + '\n');
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
let session = null;

class Session {
  constructor(context, page) {
    this.context = context;
    this.page = page;
    this.requests = [];
    this.pending = [];
    this.failed = [];
    this.badResponses = [];
    this.websockets = [];
    this.frames = [];
    this.console = [];
    this.pageErrors = [];
    context.on('request', (request) => this.requests.push({ url: request.url(), method: request.method(), type: request.resourceType(), at: Date.now() }));
    context.on('requestfinished', (request) => {
      const entry = this.requests.findLast((r) => r.url === request.url() && r.bytes === undefined);
      this.pending.push(
        request.sizes().then(
          (sizes) => {
            if (entry) entry.bytes = sizes.responseBodySize + sizes.responseHeadersSize;
          },
          () => {},
        ),
      );
    });
    context.on('requestfailed', (request) => this.failed.push({ url: request.url(), error: request.failure()?.errorText }));
    context.on('response', (response) => {
      if (response.status() >= 400) this.badResponses.push({ url: response.url(), status: response.status() });
    });
    page.on('websocket', (ws) => {
      this.websockets.push(ws.url());
      ws.on('framesent', (frame) => this.frames.push({ dir: 'sent', payload: String(frame.payload), at: Date.now() }));
      ws.on('framereceived', (frame) => this.frames.push({ dir: 'received', payload: String(frame.payload), at: Date.now() }));
    });
    page.on('console', (message) => {
      const type = message.type();
      if (type === 'error' || type === 'warning') this.console.push({ type, text: message.text(), location: message.location() });
    });
    page.on('pageerror', (error) => this.pageErrors.push(String(error)));
  }

  messages() {
    return this.frames.map((frame) => {
      try {
        return { dir: frame.dir, at: frame.at, ...JSON.parse(frame.payload) };
      } catch {
        return { dir: frame.dir, at: frame.at, unparsed: frame.payload };
      }
    });
  }
}

function locate({ within, role, name, label, selector, text, exact = true, nth }) {
  let scope = within ? session.page.locator(within).first() : session.page;
  let locator;
  if (role) locator = scope.getByRole(role, name === undefined ? {} : { name, exact });
  else if (label) locator = scope.getByLabel(label, { exact });
  else if (selector) locator = scope.locator(selector);
  else throw new Error('a locator needs role, label or selector');
  if (text !== undefined) locator = locator.filter({ hasText: text });
  return nth === undefined ? locator.first() : locator.nth(nth);
}

const commands = {
  async open({ url, width = 1280, height = 800 }) {
    if (session) await session.context.close();
    const context = await browser.newContext({ viewport: { width, height } });
    const page = await context.newPage();
    page.setDefaultTimeout(ACTION_TIMEOUT);
    session = new Session(context, page);
    await context.addInitScript(() => {
      window.__cspViolations = [];
      window.__drawn = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__cspViolations.push(`${event.effectiveDirective} blocked ${event.blockedURI || 'inline'} at ${event.sourceFile || '?'}:${event.lineNumber}`);
      });
      document.addEventListener('console:drawn', (event) => window.__drawn.push(event.detail));
      // Every WebSocket the page opens, so `offline` can drop them.
      const Native = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    const response = await page.goto(url, { waitUntil: 'load' });
    await page.locator('html[data-ready="true"]').waitFor({ state: 'attached', timeout: READY_TIMEOUT });
    return { status: response.status(), url: page.url(), csp: (await response.allHeaders())['content-security-policy'] || null };
  },
  async reload() {
    await session.page.reload({ waitUntil: 'load' });
    await session.page.locator('html[data-ready="true"]').waitFor({ state: 'attached', timeout: READY_TIMEOUT });
    return {};
  },
  async click(locator) {
    await locate(locator).click();
    return {};
  },
  async fill(locator) {
    await locate(locator).fill(String(locator.value));
    return {};
  },
  async select(locator) {
    await locate(locator).selectOption(String(locator.value));
    return {};
  },
  async upload(locator) {
    const file = { name: locator.filename, mimeType: 'application/octet-stream', buffer: Buffer.from(locator.base64, 'base64') };
    await locate(locator).setInputFiles(file);
    return {};
  },
  async check(locator) {
    await locate(locator).check();
    return {};
  },
  async press({ key }) {
    await session.page.keyboard.press(key);
    return {};
  },
  async type({ text }) {
    await session.page.keyboard.type(text);
    return {};
  },
  async wait(locator) {
    const element = locate(locator);
    await element.waitFor({ state: 'visible', timeout: locator.timeout || ACTION_TIMEOUT });
    return { text: await element.innerText() };
  },
  // Polled from here: waitForFunction compiles the string in the page, which the
  // console's CSP (no 'unsafe-eval') refuses.
  async until({ expression, timeout = ACTION_TIMEOUT }) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const value = await session.page.evaluate(expression);
      if (value) return { value };
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${expression}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  },
  async eval({ expression }) {
    return { value: await session.page.evaluate(expression) };
  },
  async drawn() {
    return { drawn: await session.page.evaluate(() => window.__drawn) };
  },
  async focused() {
    return {
      value: await session.page.evaluate(() => {
        const element = document.activeElement;
        return { tag: element.tagName, text: element.textContent.trim().slice(0, 80), label: element.labels?.[0]?.textContent || null };
      }),
    };
  },
  async offline({ on }) {
    await session.context.setOffline(Boolean(on));
    if (on) await session.page.evaluate(() => window.__sockets.forEach((socket) => socket.close(4000, 'network lost')));
    return {};
  },
  async viewport({ width, height }) {
    await session.page.setViewportSize({ width, height });
    return {};
  },
  async screenshot({ path, fullPage = false }) {
    await session.page.screenshot({ path, fullPage });
    return {};
  },
  async metrics() {
    const cdp = await session.context.newCDPSession(session.page);
    await cdp.send('HeapProfiler.collectGarbage');
    await cdp.send('Performance.enable');
    const { metrics } = await cdp.send('Performance.getMetrics');
    await cdp.detach();
    return { metrics: Object.fromEntries(metrics.map((m) => [m.name, m.value])) };
  },
  async report() {
    await Promise.all(session.pending);
    const reported = await session.page.evaluate(() => window.__cspViolations || []);
    const logged = session.console.filter((m) => /Content Security Policy/i.test(m.text)).map((m) => m.text);
    return {
      requests: session.requests,
      failed: session.failed,
      badResponses: session.badResponses,
      websockets: session.websockets,
      messages: session.messages(),
      console: session.console,
      pageErrors: session.pageErrors,
      cspViolations: [...reported, ...logged],
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
      answer.page = {
        url: session.page.url(),
        main: await session.page.locator('main').innerText().catch(() => null),
        console: session.console,
        pageErrors: session.pageErrors,
        messages: session.messages().slice(-6),
      };
    }
    send(answer);
  }
  if (request && request.cmd === 'close') break;
}
await browser.close().catch(() => {});
process.exit(0);
