// Drives code-server in headless Chromium: wait until the workbench has finished starting with no
// file open (fimlsp must not have started a server), open a Python file, type, wait for fimlsp's
// ghost text, screenshot it, accept it with Tab, save; type again and accept one word with
// Ctrl+Right (a partial accept). Prints one JSON line with what it saw; the Python test
// (tests/editors/test_vscode.py) starts code-server and checks the result.
//
//   node e2e.mjs '{"url": ..., "folder": ..., "file": "app.py", "typed": "total = add",
//                  "screenshot": ..., "chromium": "/usr/bin/chromium", "profile": ...,
//                  "playwright": "/path/to/node_modules/playwright-core", "timeoutMs": 60000}'
//
// With "flow": "nextedit" it instead renames a parameter and checks the next edit the extension
// shows, goes to, applies, and the stale ones it must not (see nextEditFlow); with "flow":
// "cycle" it cycles through the server's alternatives with Alt+] / Alt+[ and accepts the second
// (see cycleFlow).
//
// Every wait is bounded and waits for a condition in the page, never for a fixed time.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(import.meta.url);
const { chromium } = require(cfg.playwright);
const timeout = cfg.timeoutMs ?? 60000;
const started = Date.now();
const steps = [];
const step = (name) => {
  steps.push({ name, s: +((Date.now() - started) / 1000).toFixed(1) });
  console.error(`[e2e ${steps.at(-1).s}s] ${name}`);
};
const result = { ok: false, steps };

const context = await chromium.launchPersistentContext(cfg.profile, {
  executablePath: cfg.chromium,
  headless: true,
  viewport: { width: 1280, height: 720 },
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(timeout);
const consoleErrors = [];
page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text().slice(0, 300)));

// The status bar item of the extension (element id "<extension id>.fimlsp.status"); its
// accessible label is "fimlsp: <state>[: N ms]".
const STATUS = '.statusbar-item[id$="fimlsp.status"]';
const statusItem = page.locator(STATUS).first();
const statusLabel = async () =>
  (await statusItem.getAttribute('aria-label', { timeout: 1000 }).catch(() => null)) ?? '';

async function waitForReady() {
  // Ready, or fail fast on error: the extension's status item says which.
  const deadline = Date.now() + timeout;
  await statusItem.waitFor({ state: 'attached', timeout });
  await page.waitForFunction(
    (selector) => {
      const el = document.querySelector(selector);
      const label = el?.getAttribute('aria-label') ?? '';
      return label.startsWith('fimlsp: ready') || label.startsWith('fimlsp: error');
    },
    STATUS,
    { timeout: Math.max(1000, deadline - Date.now()), polling: 100 },
  );
  const label = await statusLabel();
  if (label.startsWith('fimlsp: error')) {
    throw new Error(`the extension reports an error: ${label} (see the fimlsp output channel)`);
  }
  return label;
}

/** The ghost text on screen: every `.ghost-text-decoration` (VS Code splits it at spaces). */
async function ghostText() {
  return page.evaluate(() => {
    const text = (el) => (el.textContent ?? '').replace(/\u00a0/g, ' ');
    const inline = [...document.querySelectorAll('.monaco-editor .ghost-text-decoration')].map(text);
    const below = [...document.querySelectorAll('.monaco-editor .ghost-text .view-line')].map(text);
    return { inline: inline.join(''), lines: below };
  });
}

/** The extension host's log under cfg.logsDir (it says which extension activated, and why). */
function exthostLog() {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/exthost\.log$/.test(entry.name)) found.push(full);
    }
  };
  walk(cfg.logsDir);
  return found.map((file) => fs.readFileSync(file, 'utf8')).join('\n');
}

/** Polls `check()` (file system state, not the page) until truthy; bounded. */
async function until(what, check, ms = timeout) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function waitForGhost() {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('.monaco-editor .ghost-text-decoration')].some(
        (el) => (el.textContent ?? '').trim().length > 0,
      ),
    null,
    { timeout, polling: 50 },
  );
}

async function runCommand(title) {
  await page.keyboard.press('Control+Shift+P');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type(title);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
}

/** Types at the end of the file, accepts the ghost text with Tab and saves; types again and
 * accepts a word; shows statistics; toggles completions off. */
async function ghostTextFlow(editor) {
  // Focus the text, go to the end of the file, type.
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(cfg.typed, { delay: 40 });
  step(`typed ${JSON.stringify(cfg.typed)}`);

  await waitForGhost();
  step('ghost text visible');
  const ghost = await ghostText();
  result.ghost = ghost.inline;
  result.ghostLines = ghost.lines;
  result.statusAfterCompletion = await statusLabel();
  await page.screenshot({ path: cfg.screenshot });
  step(`screenshot ${cfg.screenshot}`);

  await page.keyboard.press('Tab');
  // Accepted: the ghost text we saw is now in the line's real text.
  await page.waitForFunction(
    ({ typed, ghost }) => {
      // The lines' real text: without ghost text, which VS Code draws inside the same line.
      const lines = [...document.querySelectorAll('.editor-instance .monaco-editor .view-line')].map((line) => {
        const copy = line.cloneNode(true);
        copy.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview').forEach((g) => g.remove());
        return (copy.textContent ?? '').replace(/\u00a0/g, ' ');
      });
      return lines.some((line) => line.includes(typed + ghost.slice(0, 20)));
    },
    { typed: cfg.typed, ghost: result.ghost },
    { timeout: 10000, polling: 50 },
  );
  step('accepted with Tab');
  if (cfg.screenshotAccepted) {
    await page.screenshot({ path: cfg.screenshotAccepted });
  }

  await page.keyboard.press('Escape'); // drop a new suggestion, if one came
  await page.keyboard.press('Control+S');
  const file = path.join(cfg.folder, cfg.file);
  const deadline = Date.now() + 10000;
  let saved = fs.readFileSync(file, 'utf8');
  while (!saved.includes(cfg.typed) && Date.now() < deadline) {
    await page.waitForTimeout(100); // polling the file on disk, not synchronising with the UI
    saved = fs.readFileSync(file, 'utf8');
  }
  result.saved = saved;
  step('saved');

  // A partial accept: type again, and take the suggestion's next word with Ctrl+Right.
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.type(cfg.typedAgain, { delay: 40 });
  await waitForGhost();
  result.ghostAgain = (await ghostText()).inline;
  step(`ghost text visible again (${JSON.stringify(result.ghostAgain)})`);
  await page.keyboard.press('Control+ArrowRight');
  await until('the partial accept to reach the server', () =>
    fs.existsSync(cfg.tapLog) && fs.readFileSync(cfg.tapLog, 'utf8').includes('fimlsp.partialAccept'),
  10000);
  step('accepted a word with Ctrl+Right');
  await page.keyboard.press('Escape');

  // "Show statistics" asks the server for its counters, logs them to the fimlsp output channel
  // and shows it (the Python test reads the line from the channel's log file).
  await runCommand('fimlsp: Show statistics');
  // The stats line wraps over more lines than the panel shows and the panel follows its end:
  // wait for the server's state, which the server puts last but for its sub-reports.
  await page.locator('.panel .view-lines', { hasText: /"state":"ready"/ }).first().waitFor();
  step('statistics shown');
  if (cfg.focusOutput) {
    // The output channel becomes the active text editor (an output: document): no warm start
    // may go there (the server does not have it).
    await page.locator('.panel .monaco-editor textarea').first().focus();
    step('output channel focused');
  }

  // Toggle turns completions off, and the status bar says so.
  await runCommand('fimlsp: Toggle inline completions');
  await page.locator(`${STATUS}[aria-label="fimlsp: off"]`).first().waitFor();
  result.statusToggled = await statusLabel();
  step('toggled off');
}

/** What the extension's next-edit decorations draw: the text struck through (computed style, so
 * whatever class names VS Code gives them) and the text drawn after it (a pseudo-element's content
 * or injected text). */
async function nextEditOnScreen() {
  return page.evaluate(() => {
    const struck = [];
    const after = [];
    for (const el of document.querySelectorAll('.editor-instance .monaco-editor .view-lines span')) {
      if (el.children.length === 0 && getComputedStyle(el).textDecorationLine.includes('line-through')) {
        struck.push((el.textContent ?? '').replace(/\u00a0/g, ' '));
      }
      for (const pseudo of ['::after', '::before']) {
        const content = getComputedStyle(el, pseudo).content;
        if (content && content !== 'none' && content !== 'normal' && content !== '""') {
          after.push(content.replace(/^"|"$/g, '').replace(/\u00a0/g, ' '));
        }
      }
      if (/TextEditorDecorationType/.test(el.className) && el.children.length === 0 && el.textContent) {
        after.push(el.textContent.replace(/\u00a0/g, ' '));
      }
    }
    return { struck, after };
  });
}

async function waitForNextEdit(text) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen = await nextEditOnScreen();
    if (seen.after.some((t) => t.includes(text))) return seen;
    if (Date.now() > deadline) throw new Error(`no next edit ${JSON.stringify(text)} on screen: ${JSON.stringify(seen)}`);
    await page.waitForTimeout(100); // polling the page for a condition
  }
}

async function waitForNoNextEdit() {
  await page.waitForFunction(
    () =>
      ![...document.querySelectorAll('.editor-instance .monaco-editor .view-lines span')].some(
        (el) => el.children.length === 0 && getComputedStyle(el).textDecorationLine.includes('line-through'),
      ),
    null,
    { timeout, polling: 50 },
  );
}

/** Ctrl+S, then the file as saved, once `check` holds for it. */
async function save(check) {
  await page.keyboard.press('Control+S');
  const file = path.join(cfg.folder, cfg.file);
  return until('the file to be saved', () => {
    const text = fs.readFileSync(file, 'utf8');
    return check(text) ? text : null;
  }, 10000);
}

async function cursorAt() {
  return (await page.locator('.statusbar-item[id="status.editor.selection"]').first().textContent()) ?? '';
}

function tapLog() {
  return fs.existsSync(cfg.tapLog) ? fs.readFileSync(cfg.tapLog, 'utf8') : '';
}

/** The extension's output channel (its own log lines and the server's). */
function channelLog() {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/fimlsp.*\.log$/.test(entry.name)) found.push(full);
    }
  };
  walk(cfg.logsDir);
  return found.map((file) => fs.readFileSync(file, 'utf8')).join('\n');
}

/** Next edits: a rename shown after a pause (the tap answers with known edits, lsp_tap.py
 * --inline-edits), gone to with the command, applied with Tab; one shown then made stale by
 * typing, which apply refuses; one that arrives after the user typed on, never shown. */
async function nextEditFlow(editor) {
  await editor.locator('.view-lines').click();
  const original = fs.readFileSync(path.join(cfg.folder, cfg.file), 'utf8');
  // Rename `h` to `height` in the signature (line 2), in one change.
  await page.keyboard.press('Control+G');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type('2:28');
  await page.keyboard.press('Enter');
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
  await page.keyboard.insertText('eight');
  step('renamed h to height');
  // Nothing asked for: typing paused, and the extension asked by itself.
  result.shown = await waitForNextEdit('height = height');
  result.requestsBeforeShown = (tapLog().match(/textDocument\/copilotInlineEdit/g) ?? []).length;
  step(`next edit shown ${JSON.stringify(result.shown)}`);
  await page.screenshot({ path: cfg.screenshot });
  result.cursorBeforeJump = await cursorAt();
  await runCommand('fimlsp: Go to the next edit');
  await page.locator('.statusbar-item[id="status.editor.selection"]', { hasText: 'Ln 4, Col 14' }).first().waitFor();
  result.cursorAfterJump = await cursorAt();
  step(`jumped (${result.cursorAfterJump})`);
  await page.keyboard.press('Tab'); // on the edit's line: applies it
  await waitForNoNextEdit();
  result.afterApply = await save((text) => text.includes('self.height = height'));
  result.original = original;
  await until('the accept command to reach the server', () =>
    tapLog().includes('workspace/executeCommand fimlsp.acceptNextEdit'), 10000);
  step('applied with Tab');

  // Shown, then the user types: hidden, and apply refuses.
  await runCommand('fimlsp: Suggest the next edit');
  await waitForNextEdit('Rect');
  step('second next edit shown');
  await page.keyboard.press('Control+End');
  await page.keyboard.insertText('# typed\n');
  await waitForNoNextEdit();
  result.staleShown = await nextEditOnScreen();
  await runCommand('fimlsp: Apply the next edit');
  await until('apply to find nothing to apply', () => /next edit: none on show to apply/.test(channelLog()));
  result.afterStale = await save((text) => text.includes('# typed'));
  step('a stale next edit was hidden and not applied');

  // The answer comes after the user typed on (the tap holds it until the change went by).
  await runCommand('fimlsp: Suggest the next edit');
  await until('the answer to be held', () => tapLog().includes('<held copilotInlineEdit 1>'));
  await page.keyboard.insertText('# more\n');
  await until('the extension to drop the late answer', () => /next edit for \S+ .*dropped/.test(channelLog()));
  result.dropped = channelLog().split('\n').filter((line) => / dropped/.test(line));
  result.lateShown = await nextEditOnScreen();
  result.final = await save((text) => text.includes('# more'));
  step('a late next edit was dropped');
}

/** The tap's log of the server's answers to textDocument/inlineCompletion (lsp_tap.py --answers),
 * oldest first: [{id, asked, answer}]. */
function inlineAnswers() {
  const file = `${cfg.tapLog}.json`;
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"tap": "inline"'))
    .map((line) => JSON.parse(line));
}

const itemsOf = (answer) => (Array.isArray(answer) ? answer : answer?.items ?? []);

/** VS Code's inline suggestion toolbar, shown while the mouse is on the ghost text: its counter,
 * "2/3" while the second of three is shown (once VS Code asked for all of them: when the user
 * cycles, or hovers). Hovers the ghost text until the counter matches `pattern`; bounded. */
async function counterOnHover(pattern, screenshot = null, ms = 10000) {
  const read = () =>
    page.evaluate(() =>
      [...document.querySelectorAll('.inlineSuggestionsHints .availableSuggestionCount')]
        .map((el) => (el.textContent ?? '').trim())
        .filter((text) => text.length > 0)
        .join(' '),
    );
  const deadline = Date.now() + ms;
  let counter = '';
  for (;;) {
    await page.mouse.move(5, 5); // off the editor: a fresh hover each try
    await page.locator('.monaco-editor .ghost-text-decoration').first().hover({ timeout: 2000 }).catch(() => {});
    const hovered = Date.now() + 1500;
    while (Date.now() < hovered) {
      counter = await read();
      if (pattern.test(counter)) {
        if (screenshot) await page.screenshot({ path: screenshot });
        await page.mouse.move(5, 5);
        return counter;
      }
      await page.waitForTimeout(50); // polling the page for a condition
    }
    if (Date.now() > deadline) {
      throw new Error(`the suggestion's toolbar counter is ${JSON.stringify(counter)}, not ${pattern}`);
    }
  }
}

/** Polls the page until `check(ghost)` holds for the ghost text; bounded. */
async function waitForGhostText(what, check, ms = timeout) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ghost = (await ghostText()).inline;
    if (check(ghost)) return ghost;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}: ghost ${JSON.stringify(ghost)}`);
    }
    await page.waitForTimeout(50); // polling the page for a condition
  }
}

const inlineRequests = () => (tapLog().match(/^textDocument\/inlineCompletion$/gm) ?? []).length;

/** Alternatives: type (one change: one request, answered by the model), wait for the ghost text
 * and then for the server's log to say that its alternatives are ready, then Alt+] (VS Code asks
 * again, invoked, and shows the server's second item), Alt+[ (back to the first), Alt+] again,
 * each time reading the toolbar's counter (2/N, 1/N) on hover, and Tab accepts the alternative
 * shown. */
async function cycleFlow(editor) {
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.insertText(cfg.typed);
  step(`typed ${JSON.stringify(cfg.typed)}`);
  await waitForGhost();
  // The answers whose first item is on screen (its first line: the lines below are drawn apart),
  // by their accept ids; one of them (the model's) has its alternatives computed after it.
  const firstLine = (text) => text.split('\n')[0].trimEnd();
  let first;
  const deadline = Date.now() + timeout;
  for (;;) {
    const ghost = (await ghostText()).inline;
    const ids = inlineAnswers()
      .map((a) => itemsOf(a.answer)[0])
      .filter((item) => item && firstLine(item.insertText) === ghost.trimEnd())
      .map((item) => item.command?.arguments?.[0]);
    const said = channelLog()
      .split('\n')
      .filter((line) => ids.some((id) => line.includes(`alternatives to request ${id} `)));
    const ready = said.find((line) => / [1-9]\d* ready/.test(line));
    if (ready) {
      first = { ghost, ready };
      break;
    }
    if (said.length > 0 && said.every((line) => / stopped /.test(line))) {
      throw new Error(`the alternatives to the suggestion shown were stopped: ${said.join(' | ')}`);
    }
    if (said.some((line) => / 0 ready/.test(line))) {
      throw new Error(`the server found no alternatives here: ${said.join(' | ')}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for the alternatives to ${JSON.stringify(ghost)} (answers ${JSON.stringify(ids)})`);
    }
    await page.waitForTimeout(100); // polling the server's log for a condition
  }
  result.first = first;
  result.requestsBeforeCycling = inlineRequests();
  step(`ghost text ${JSON.stringify(first.ghost)}; ${first.ready}`);
  await page.screenshot({ path: cfg.screenshot });

  await page.keyboard.press('Alt+BracketRight');
  const second = await waitForGhostText('Alt+] to show another suggestion', (g) => g.length > 0 && g !== first.ghost);
  result.requestsAfterNext = inlineRequests();
  const shot = cfg.screenshotAccepted?.replace(/-accepted\.png$/, '-second.png');
  result.second = { ghost: second, counter: await counterOnHover(/^2\/\d+$/, shot) };
  step(`Alt+] shows ${JSON.stringify(result.second)}`);
  await page.keyboard.press('Alt+BracketLeft');
  const back = await waitForGhostText('Alt+[ to show the first suggestion again', (g) => g === first.ghost);
  result.back = { ghost: back, counter: await counterOnHover(/^1\/\d+$/) };
  step(`Alt+[ shows ${JSON.stringify(result.back)}`);
  await page.keyboard.press('Alt+BracketRight');
  const again = await waitForGhostText('Alt+] to show the second suggestion again', (g) => g === second);
  result.again = { ghost: again, counter: await counterOnHover(/^2\/\d+$/) };
  result.requestsAfterCycling = inlineRequests();
  step(`Alt+] shows ${JSON.stringify(result.again)}`);

  await page.keyboard.press('Tab');
  await until('the accept to reach the server', () => /fimlsp\.accept$/m.test(tapLog()), 10000);
  await page.keyboard.press('Escape'); // drop a new suggestion, if one came
  result.saved = await save((text) => text.includes(cfg.typed + second.trimEnd()));
  step('accepted the second suggestion with Tab and saved');
  if (cfg.screenshotAccepted) {
    await page.screenshot({ path: cfg.screenshotAccepted });
  }
}

try {
  const url = `${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`;
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.locator('.monaco-workbench').waitFor();
  step('workbench loaded');
  if (cfg.untrusted) {
    // Workspace trust's start-up question: keep the folder in Restricted Mode.
    await page.getByRole('button', { name: /No, I don't trust the authors/ }).click();
    step('workspace left untrusted');
  }
  // Startup is over once the onStartupFinished extensions (merge-conflict, ...) have activated:
  // fimlsp must not have started a server yet, with no file open.
  await until('startup to finish', () => /activationEvent: 'onStartupFinished'/.test(exthostLog()));
  result.beforeFile = {
    activation: exthostLog().split('\n').filter((l) => l.includes('_doActivateExtension fimlsp.fimlsp')),
    serverStarted: fs.existsSync(cfg.tapLog),
    statusItems: await page.locator(STATUS).count(),
  };
  step(`startup finished (server started: ${result.beforeFile.serverStarted})`);

  // Open a file with Quick Open.
  const openFile = async (name, waitForText) => {
    await page.locator('.monaco-workbench').click({ position: { x: 640, y: 360 } }).catch(() => {});
    await page.keyboard.press('Control+P');
    await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
    await page.keyboard.type(name);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
    await page.keyboard.press('Enter');
    await page.locator('.tab.active', { hasText: name }).waitFor();
    await page.locator('.editor-instance .monaco-editor .view-lines', { hasText: waitForText ?? '' }).first().waitFor();
    step(`opened ${name}`);
  };
  if (cfg.firstFile) {
    // A file of a language fimlsp is off for, opened first: it must never reach the server.
    await openFile(cfg.firstFile, cfg.firstFileText);
  }
  result.openedAt = Date.now();
  await openFile(cfg.file, cfg.waitForText);
  const editor = page.locator('.editor-instance .monaco-editor').first();
  result.statusBefore = await waitForReady();
  step(`extension ready (${result.statusBefore})`);

  if (cfg.flow === 'nextedit') {
    await nextEditFlow(editor);
  } else if (cfg.flow === 'cycle') {
    await cycleFlow(editor);
  } else {
    await ghostTextFlow(editor);
  }
  result.activation = exthostLog().split('\n').filter((l) => l.includes('_doActivateExtension fimlsp.fimlsp'));
  result.ok = true;
} catch (error) {
  result.error = String(error?.stack ?? error);
  result.statusOnError = await statusLabel();
  result.consoleErrors = consoleErrors.slice(-10);
  if (cfg.screenshot) {
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, '-failure.png') }).catch(() => {});
  }
} finally {
  await context.close().catch(() => {});
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
