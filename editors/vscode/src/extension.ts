// VS Code client for fimlsp: starts `fimlsp serve` on stdio and lets vscode-languageclient (10.x,
// native LSP 3.18 inline completion) turn its answers into ghost text. This file adds what the
// client does not do by itself: settings → server options, per-language enable, a status bar
// item, partial accepts reported to the server, and the toggle / trigger / show-log commands.
// Next-edit suggestions (the server's textDocument/copilotInlineEdit) are in nextedit.ts.
//
// The extension activates when a file is opened (`onLanguage`) or one of its commands runs, and
// starts the server (which loads a model: seconds and gigabytes) only once a file of a language
// fimlsp is enabled for is open: a window with no code in it costs nothing.
import * as os from 'os';
import * as readline from 'readline';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  DidCloseTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  WorkDoneProgressBegin,
  WorkDoneProgressEnd,
  WorkDoneProgressReport,
} from 'vscode-languageclient/node';
import { NextEdits } from './nextedit';

const SECTION = 'fimlsp';
// Settings the server understands (fimlsp/config.py; camelCase is fine). Only values the user set
// are sent: the server's defaults, and flags in the server command (`--model`), stay in force.
const SERVER_OPTIONS = [
  'model',
  'device',
  'quantization',
  'maxNewTokens',
  'contextWindow',
  'multiline',
  'timeBudgetMs',
  'logLevel',
  'engine',
  'endpoint',
  'servedModel',
  'apiKeyEnv',
  'connectTimeoutMs',
  'tlsVerify',
  'retries',
] as const;
// Settings read by this extension to start the server: changing one restarts it.
const START_OPTIONS = ['serverCommand', 'pythonPath'] as const;
// Settings that send code off the machine (engine, endpoint, servedModel, tlsVerify), read the
// server's environment (apiKeyEnv) or load files (model) — and the start options, which run a
// program. A cloned repository's .vscode/settings.json must not set them before the user trusts
// it: they are restrictedConfigurations in package.json, and workspace or folder values of them
// are taken only in a trusted workspace (VS Code's get() does that for the start options; the
// server options are read with inspect(), which does not, so `trusted()` below does).
const RESTRICTED = new Set<string>(['model', 'engine', 'endpoint', 'servedModel', 'apiKeyEnv', 'tlsVerify']);
const DEFAULT_COMMAND = ['fimlsp', 'serve'];

type Options = Record<string, unknown>;
type Stats = {
  state?: string;
  error?: string | null;
  version?: string;
  model?: string;
  device?: string | null;
  quantization?: string | null;
  window?: number;
  total_ms?: number | null;
  prompt_tokens?: number | null;
  reused_tokens?: number | null;
  prefill_ms?: number | null;
  decode_ms?: number | null;
  generated_tokens?: number | null;
  requests?: number;
  accepted?: number;
  partially_accepted?: number;
  cancelled?: number;
};

/** One line for the user: this extension's version and the server's, the model, where it runs. */
function describe(s: Stats): string {
  const server = s.version
    ? `server: fimlsp ${s.version}, model ${s.model ?? '?'} on ${s.device ?? '?'} (quantization ${s.quantization ?? '?'})`
    : 'server: not running';
  return `fimlsp for VS Code ${extensionVersion}; ${server}`;
}

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let status: Status;
let sentOptions: Options = {};
let stopping = false;
let extensionVersion = '?';
let nextEdits: NextEdits | undefined;

/** An item of the last answer per document: what a partial accept is measured against. */
type Shown = { id: number; text: string; start: vscode.Position; reported: number };
const shown = new Map<string, Shown[]>();

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

type Seen = { globalValue?: unknown; workspaceValue?: unknown; workspaceFolderValue?: unknown };

/** The value of a setting the user set: the folder's, else the workspace's, else their own —
 * except that a restricted setting takes only the user's own in an untrusted workspace. */
export function settingValue(seen: Seen | undefined, restricted: boolean, trusted: boolean): unknown {
  if (seen === undefined) {
    return undefined;
  }
  if (restricted && !trusted) {
    return seen.globalValue;
  }
  return seen.workspaceFolderValue ?? seen.workspaceValue ?? seen.globalValue;
}

/** Server options the user set somewhere (user, workspace or folder settings). */
function explicitOptions(): Options {
  const settings = config();
  const options: Options = {};
  const trusted = vscode.workspace.isTrusted;
  for (const key of SERVER_OPTIONS) {
    const value = settingValue(settings.inspect(key), RESTRICTED.has(key), trusted);
    if (value !== undefined && value !== null && value !== '') {
      options[key] = value;
    }
  }
  return options;
}

function expand(word: string): string {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
  return word
    .replace(/^~(?=$|\/)/, os.homedir())
    .replace(/\$\{workspaceFolder\}/g, folder)
    .replace(/\$\{userHome\}/g, os.homedir());
}

/** The program and arguments that start the server. */
function serverCommand(): string[] {
  const settings = config();
  const python = (settings.get<string>('pythonPath') ?? '').trim();
  if (python) {
    return [expand(python), '-m', 'fimlsp', 'serve'];
  }
  const command = settings.get<unknown>('serverCommand');
  if (Array.isArray(command) && command.length > 0 && command.every((w) => typeof w === 'string') && command[0]) {
    return (command as string[]).map(expand);
  }
  return DEFAULT_COMMAND;
}

/** Whether `fimlsp.enable` is on for a language (the master switch aside): the documents the
 * server is sent. A language switched off never has its text leave the editor; the master switch
 * only hides suggestions, so that turning it back on costs nothing. */
function languageEnabled(languageId: string): boolean {
  const perLanguage = config().get<Record<string, boolean>>('enable') ?? {};
  if (typeof perLanguage[languageId] === 'boolean') {
    return perLanguage[languageId];
  }
  return perLanguage['*'] !== false;
}

/** Documents the server has open (sent with didOpen and not closed since), by URI. */
let synced = new Set<string>();

/** A document the server is to have: a file or untitled buffer of a language switched on. */
function syncable(document: vscode.TextDocument): boolean {
  return (document.uri.scheme === 'file' || document.uri.scheme === 'untitled') && languageEnabled(document.languageId);
}

/** After `fimlsp.enable` changed: opens on the server the documents of languages switched on,
 * and closes those of languages switched off. */
async function resync(): Promise<void> {
  const current = client;
  if (current === undefined || current.state !== State.Running) {
    return;
  }
  for (const document of vscode.workspace.textDocuments) {
    const uri = document.uri.toString();
    const want = syncable(document);
    if (want && !synced.has(uri)) {
      synced.add(uri);
      await current.sendNotification(
        DidOpenTextDocumentNotification.type,
        current.code2ProtocolConverter.asOpenTextDocumentParams(document),
      );
    } else if (!want && synced.has(uri)) {
      synced.delete(uri);
      shown.delete(uri);
      await current.sendNotification(
        DidCloseTextDocumentNotification.type,
        current.code2ProtocolConverter.asCloseTextDocumentParams(document),
      );
    }
  }
}

/** Whether completions are on for a document's language (`fimlsp.enabled` and `fimlsp.enable`). */
function enabledFor(languageId: string | undefined): boolean {
  const settings = config();
  if (!settings.get<boolean>('enabled', true)) {
    return false;
  }
  const perLanguage = settings.get<Record<string, boolean>>('enable') ?? {};
  if (languageId !== undefined && typeof perLanguage[languageId] === 'boolean') {
    return perLanguage[languageId];
  }
  return perLanguage['*'] !== false;
}

// -- status bar ---------------------------------------------------------------------------------

type Phase = 'starting' | 'loading' | 'ready' | 'error' | 'stopped';

class Status implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private phase: Phase = 'starting';

  get ready(): boolean {
    return this.phase === 'ready';
  }
  private detail = '';
  private latency: number | undefined;
  stats: Stats = {};
  private poll: NodeJS.Timeout | undefined;

  constructor() {
    this.item = vscode.window.createStatusBarItem('fimlsp.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'fimlsp';
    this.render();
    // Shown once the server starts (a window without code has nothing to say about fimlsp).
  }

  set(phase: Phase, detail = ''): void {
    this.phase = phase;
    this.detail = detail;
    if (phase !== 'ready') {
      this.latency = undefined;
    }
    if (phase === 'loading') {
      this.startPolling();
    } else {
      this.stopPolling();
    }
    this.render();
  }

  progress(message: string | undefined, percentage: number | undefined): void {
    const parts = [message, percentage !== undefined ? `${percentage}%` : undefined].filter(Boolean);
    this.set('loading', parts.join(' '));
  }

  /** The latency of a suggestion as the editor saw it (request to answer), measured here so that
   * showing it costs the server nothing. */
  completed(ms: number): void {
    this.latency = ms;
    if (this.phase === 'ready') {
      this.render();
    }
  }

  /** Applies a `fimlsp.stats` answer: the server's state, version, model, device. */
  update(stats: Stats): void {
    this.stats = stats;
    if (stats.state === 'failed') {
      this.set('error', stats.error ?? 'the model failed to load');
      return;
    }
    if (stats.state === 'loading' || stats.state === 'idle') {
      if (this.phase !== 'loading') {
        this.set('loading', this.detail);
      }
      return;
    }
    if (stats.state === 'ready') {
      if (this.phase !== 'ready') {
        this.set('ready');
        warmSoon(vscode.window.activeTextEditor);
      }
      this.render();
    }
  }

  render(): void {
    const editor = vscode.window.activeTextEditor;
    const on = enabledFor(editor?.document.languageId);
    const item = this.item;
    item.backgroundColor = undefined;
    item.command = 'fimlsp.toggle';
    let label: string;
    switch (this.phase) {
      case 'starting':
        item.text = '$(loading~spin) fimlsp: starting';
        label = 'fimlsp: starting';
        item.tooltip = `Starting ${serverCommand().join(' ')}`;
        break;
      case 'loading':
        item.text = '$(loading~spin) fimlsp: loading';
        label = 'fimlsp: loading';
        item.tooltip = `Loading the model${this.detail ? `: ${this.detail}` : ''}`;
        break;
      case 'error':
        item.text = '$(error) fimlsp: error';
        label = 'fimlsp: error';
        item.tooltip = `${this.detail}\nClick to show the server log.`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        item.command = 'fimlsp.showLog';
        break;
      case 'stopped':
        item.text = '$(debug-stop) fimlsp: stopped';
        label = 'fimlsp: stopped';
        item.tooltip = 'The server is not running. Run "fimlsp: Restart server".';
        item.command = 'fimlsp.restart';
        break;
      case 'ready': {
        const latency = this.latency !== undefined ? `: ${Math.round(this.latency)} ms` : '';
        item.text = on ? `$(sparkle) fimlsp${latency}` : '$(circle-slash) fimlsp: off';
        label = on ? `fimlsp: ready${latency}` : 'fimlsp: off';
        item.tooltip = this.tooltip(on, editor?.document.languageId);
        break;
      }
    }
    item.accessibilityInformation = { label, role: 'button' };
  }

  private tooltip(on: boolean, languageId: string | undefined): vscode.MarkdownString {
    const s = this.stats;
    const lines = [
      on ? 'fimlsp: ready' : `fimlsp: off${languageId && config().get('enabled', true) ? ` for ${languageId}` : ''}`,
      describe(s),
      s.model ? `window ${s.window ?? '?'} tokens` : '',
    ];
    if (typeof s.total_ms === 'number') {
      lines.push(
        `server's last: ${Math.round(s.total_ms)} ms (prefill ${Math.round(s.prefill_ms ?? 0)} ms, decode ` +
          `${Math.round(s.decode_ms ?? 0)} ms), ${s.prompt_tokens ?? 0} prompt tokens, ` +
          `${s.reused_tokens ?? 0} reused, ${s.generated_tokens ?? 0} generated`,
      );
    }
    if (s.requests !== undefined) {
      lines.push(
        `${s.requests} requests, ${s.accepted ?? 0} accepted, ${s.partially_accepted ?? 0} partly, ` +
          `${s.cancelled ?? 0} cancelled`,
      );
    }
    lines.push('Click to toggle inline completions.');
    return new vscode.MarkdownString(lines.filter(Boolean).join('\n\n'));
  }

  // While loading, ask the server now and then: a server (or client) without work-done progress
  // still gets its "ready" shown.
  private startPolling(): void {
    if (this.poll === undefined) {
      this.poll = setInterval(() => void refreshStats(), 1000);
    }
  }

  private stopPolling(): void {
    if (this.poll !== undefined) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  show(): void {
    this.item.show();
  }

  dispose(): void {
    this.stopPolling();
    this.item.dispose();
  }
}

let lastRefresh = 0;

/** How long the cursor rests before a warm start is asked for: typing moves it every ~100 ms,
 * so warm starts go to where the user stopped, not to every keystroke. */
const WARM_DELAY_MS = 400;
let warmTimer: ReturnType<typeof setTimeout> | undefined;

/** Warm start (`fimlsp.warm`): once the cursor rests in an editor fimlsp serves, the server
 * prefills the prompt there while the model is idle, so the first keystroke at that place costs
 * one token instead of the whole window. Any real request stops it on the server. */
function warmSoon(editor: vscode.TextEditor | undefined): void {
  if (warmTimer !== undefined) {
    clearTimeout(warmTimer);
    warmTimer = undefined;
  }
  // Only where the server has the document open: not the output channel, a git: diff or a
  // language switched off (each would be an error on the server).
  if (
    editor === undefined ||
    !config().get<boolean>('warm', true) ||
    !synced.has(editor.document.uri.toString()) ||
    !enabledFor(editor.document.languageId)
  ) {
    return;
  }
  warmTimer = setTimeout(() => void warm(editor), WARM_DELAY_MS);
}

async function warm(editor: vscode.TextEditor): Promise<void> {
  const current = client;
  if (current === undefined || current.state !== State.Running || !status.ready || vscode.window.activeTextEditor !== editor) {
    return;
  }
  const position = editor.selection.active;
  try {
    await current.sendRequest(ExecuteCommandRequest.type, {
      command: 'fimlsp.warm',
      arguments: [
        current.code2ProtocolConverter.asUri(editor.document.uri),
        { line: position.line, character: position.character },
      ],
    });
  } catch (error) {
    output.debug(`fimlsp.warm failed: ${error}`);
  }
}

/** Identifiers looked up per request: those of the cursor's line (the word being typed left out)
 * and the two lines above, nearest first. */
const DEFINITION_NAMES = 6;
const DEFINITION_LINES = 14; // of each definition, as the server's own index shows them
const IDENTIFIER = /[A-Za-z_$][\w$]*/g;
const sentDefinitions = new Map<string, string>(); // document → the names last looked up

/** The definitions VS Code's own language servers know for the identifiers near the cursor,
 * sent to the server (`fimlsp.context`), which ranks them above its workspace index: a library's
 * signature, say, which the index never reads. Not awaited by the request: it applies from the
 * next one, so a slow language server never delays a suggestion. Sent again only when the names
 * change, so the prompt (and the model's cache) stays the same while the user types. */
async function sendDefinitions(document: vscode.TextDocument, position: vscode.Position): Promise<void> {
  const current = client;
  if (current === undefined || current.state !== State.Running || !config().get<boolean>('editorDefinitions', true)) {
    return;
  }
  const names: { name: string; at: vscode.Position }[] = [];
  const seen = new Set<string>();
  for (let line = position.line; line >= Math.max(0, position.line - 2); line--) {
    let text = document.lineAt(line).text;
    if (line === position.line) {
      text = text.slice(0, position.character).replace(/[\w$]+$/, '');
    }
    const found = [...text.matchAll(IDENTIFIER)].reverse();
    for (const match of found) {
      if (match[0].length >= 3 && !seen.has(match[0]) && names.length < DEFINITION_NAMES) {
        seen.add(match[0]);
        names.push({ name: match[0], at: new vscode.Position(line, match.index ?? 0) });
      }
    }
  }
  const uri = document.uri.toString();
  const key = names.map((n) => n.name).join(' ');
  if (sentDefinitions.get(uri) === key) {
    return;
  }
  sentDefinitions.set(uri, key);
  const definitions: { uri: string; line: number; name: string; text: string }[] = [];
  for (const { name, at } of names) {
    const found = await vscode.commands.executeCommand<(vscode.Location | vscode.LocationLink)[]>(
      'vscode.executeDefinitionProvider',
      document.uri,
      at,
    );
    const first = found?.[0];
    if (!first) {
      continue;
    }
    const target = 'targetUri' in first ? first.targetUri : first.uri;
    const range = 'targetUri' in first ? first.targetRange : first.range;
    if (target.toString() === uri) {
      continue; // in this file: the prompt has it
    }
    try {
      // Read, not opened: an opened document would be sent to every language server.
      const lines = new TextDecoder().decode(await vscode.workspace.fs.readFile(target)).split(/\r?\n/);
      const text = lines.slice(range.start.line, range.start.line + DEFINITION_LINES).join('\n');
      definitions.push({ uri: current.code2ProtocolConverter.asUri(target), line: range.start.line, name, text });
    } catch (error) {
      output.debug(`reading the definition of ${name} failed: ${error}`);
    }
  }
  try {
    await current.sendRequest(ExecuteCommandRequest.type, {
      command: 'fimlsp.context',
      arguments: [current.code2ProtocolConverter.asUri(document.uri), definitions],
    });
  } catch (error) {
    output.debug(`fimlsp.context failed: ${error}`);
  }
}

/** Asks for `fimlsp.stats` now and then, for the tooltip's details: when the user looks at
 * another editor, at most every 10 s. Never once per suggestion. */
function refreshStatsLazily(): void {
  if (Date.now() - lastRefresh > 10_000) {
    void refreshStats();
  }
}

async function refreshStats(): Promise<void> {
  lastRefresh = Date.now();
  const current = client;
  if (current === undefined || current.state !== State.Running) {
    return;
  }
  try {
    const stats = (await current.sendRequest(ExecuteCommandRequest.type, {
      command: 'fimlsp.stats',
      arguments: [],
    })) as Stats | null;
    if (stats && current === client) {
      status.update(stats);
    }
  } catch (error) {
    output.debug(`fimlsp.stats failed: ${error}`);
  }
}

// -- the client ---------------------------------------------------------------------------------

function createClient(): LanguageClient {
  const [command, ...args] = serverCommand();
  const serverOptions: ServerOptions = {
    command,
    args,
    // No `transport`: TransportKind.stdio would append `--stdio`; plain stdio pipes are the default.
    options: { env: { ...process.env, PYTHONUNBUFFERED: '1' } },
  };
  sentOptions = explicitOptions();
  synced = new Set<string>();
  const clientOptions: LanguageClientOptions = {
    // Files and untitled buffers; of those, only the languages `fimlsp.enable` switches on are
    // sent (the didOpen middleware below), and `resync` follows changes of it without a restart.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: sentOptions,
    outputChannel: output,
    stdioOptions: {
      stdout: (input, channel) => lines(input, (line) => channel.info(line)),
      // The server logs `<date> <time> <logger> <LEVEL> <message>` on stderr: keep the level
      // (the client's default would mark every line as an error).
      stderr: (input, channel) => lines(input, (line) => serverLogLine(channel, line)),
    },
    middleware: {
      didOpen: async (document, next) => {
        if (!syncable(document)) {
          return;
        }
        synced.add(document.uri.toString());
        await next(document);
      },
      didChange: async (event, next) => {
        if (synced.has(event.document.uri.toString())) {
          await next(event);
        }
      },
      didSave: async (document, next) => {
        if (synced.has(document.uri.toString())) {
          await next(document);
        }
      },
      willSave: async (event, next) => {
        if (synced.has(event.document.uri.toString())) {
          await next(event);
        }
      },
      didClose: async (document, next) => {
        if (synced.delete(document.uri.toString())) {
          await next(document);
        }
      },
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        if (!enabledFor(document.languageId)) {
          return null;
        }
        const started = Date.now();
        void sendDefinitions(document, position).catch((error) => output.debug(`definitions: ${error}`));
        const result = await next(document, position, context, token);
        if (!token.isCancellationRequested) {
          remember(document, position, result);
          if (result && (Array.isArray(result) ? result : result.items).length > 0) {
            status.completed(Date.now() - started);
          }
        }
        return result;
      },
      // The same model behind the suggest widget would compete with the ghost text (the server
      // answers the newest request per document): off unless asked for.
      provideCompletionItem: (document, position, context, token, next) => {
        if (!config().get<boolean>('classicCompletion', false) || !enabledFor(document.languageId)) {
          return null;
        }
        return next(document, position, context, token);
      },
      // An accepted suggestion (its item's command) is a pause worth a next edit.
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command === 'fimlsp.accept') {
          nextEdits?.accepted();
        }
        return result;
      },
      handleWorkDoneProgress: (token, params, next) => {
        onProgress(params);
        next(token, params);
      },
      workspace: {
        // The server asks for section "fimlsp" after an empty didChangeConfiguration: answer with
        // what the user set, like initializationOptions.
        configuration: async (params, token, next) => {
          const answer = await next(params, token);
          if (!Array.isArray(answer)) {
            return answer;
          }
          return answer.map((value, i) => (params.items[i]?.section === SECTION ? explicitOptions() : value));
        },
      },
    },
  };
  return new LanguageClient('fimlsp', 'fimlsp', serverOptions, clientOptions);
}

/** Keeps the items of a document's last answer that carry fimlsp's accept command. */
function remember(
  document: vscode.TextDocument,
  position: vscode.Position,
  result: vscode.InlineCompletionList | vscode.InlineCompletionItem[] | null | undefined,
): void {
  const items = result ? (Array.isArray(result) ? result : result.items) : [];
  const kept: Shown[] = [];
  for (const item of items) {
    const args = item.command?.command === 'fimlsp.accept' ? item.command.arguments : undefined;
    const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
    if (args && typeof args[0] === 'number') {
      kept.push({ id: args[0], text, start: item.range?.start ?? position, reported: 0 });
    }
  }
  shown.set(document.uri.toString(), kept);
}

/** VS Code's partial accept (next word / next line) of the suggestion shown, then
 * `fimlsp.partialAccept [id, characters of the item now in the document]`, a running total
 * counted from the item's start like VS Code's acceptedLength (in characters, as the server
 * counts them). VS Code runs an item's command only on a full accept, so without this the server
 * would never hear of a partial one. */
async function acceptPart(how: 'word' | 'line'): Promise<void> {
  await vscode.commands.executeCommand(
    how === 'word' ? 'editor.action.inlineSuggest.acceptNextWord' : 'editor.action.inlineSuggest.acceptNextLine',
  );
  const editor = vscode.window.activeTextEditor;
  const current = client;
  if (!editor || !current || current.state !== State.Running) {
    return;
  }
  const cursor = editor.selection.active;
  for (const item of shown.get(editor.document.uri.toString()) ?? []) {
    if (item.start.isAfter(cursor)) {
      continue;
    }
    const taken = editor.document.getText(new vscode.Range(item.start, cursor));
    const total = [...taken].length;
    if (taken.length > 0 && item.text.startsWith(taken) && total > item.reported) {
      item.reported = total;
      current
        .sendRequest(ExecuteCommandRequest.type, { command: 'fimlsp.partialAccept', arguments: [item.id, total] })
        .catch((error) => output.debug(`fimlsp.partialAccept failed: ${error}`));
      return;
    }
  }
}

function lines(input: NodeJS.ReadableStream, each: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', each);
}

function serverLogLine(channel: vscode.LogOutputChannel, line: string): void {
  const match = /^\S+ \S+ (\S+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/.exec(line);
  if (match === null) {
    channel.warn(line); // tracebacks, argparse errors, library warnings
    return;
  }
  const message = `${match[1]}: ${match[3]}`;
  switch (match[2]) {
    case 'DEBUG':
      channel.debug(message);
      break;
    case 'INFO':
      channel.info(message);
      break;
    case 'WARNING':
      channel.warn(message);
      break;
    default:
      channel.error(message);
  }
}

function onProgress(params: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
  if (params.kind === 'begin' || params.kind === 'report') {
    status.progress(params.message, params.percentage);
  } else {
    // The server ends with "ready" or "failed"; the stats say which and why.
    void refreshStats();
  }
}

async function start(): Promise<void> {
  stopping = false;
  status.show();
  status.set('starting');
  const current = createClient();
  client = current;
  current.onDidChangeState((event) => {
    if (current !== client) {
      return;
    }
    if (event.newState === State.Stopped && !stopping) {
      status.set('error', 'The server stopped. See the fimlsp output channel.');
    } else if (event.newState === State.Running) {
      // Also after the client restarted a crashed server by itself.
      status.set('loading');
      void refreshStats();
    }
  });
  try {
    await current.start();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const command = serverCommand().join(' ');
    output.error(`could not start \`${command}\`: ${message}`);
    status.set(
      'error',
      `Could not start \`${command}\`: ${message}\nSet fimlsp.serverCommand or fimlsp.pythonPath.`,
    );
    return;
  }
  if (current === client) {
    await refreshStats();
  }
}

async function stop(): Promise<void> {
  const current = client;
  client = undefined;
  if (current === undefined) {
    return;
  }
  stopping = true;
  try {
    if (current.state !== State.Stopped) {
      await current.stop(5000);
    }
  } catch (error) {
    output.warn(`stopping the server: ${error}`);
  } finally {
    await current.dispose().catch(() => undefined);
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

/** A document fimlsp would complete in: a file or untitled buffer of an enabled language. */
function wanted(document: vscode.TextDocument): boolean {
  return (document.uri.scheme === 'file' || document.uri.scheme === 'untitled') && enabledFor(document.languageId);
}

/** Starts the server the first time a document it is for is open; no-op once started. */
async function startWhenWanted(): Promise<void> {
  if (client === undefined && !stopping && vscode.workspace.textDocuments.some(wanted)) {
    await start();
  }
}

async function onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
  if (!event.affectsConfiguration(SECTION)) {
    return;
  }
  status.render();
  if (client === undefined) {
    await startWhenWanted(); // e.g. a language was just enabled
    return;
  }
  if (START_OPTIONS.some((key) => event.affectsConfiguration(`${SECTION}.${key}`))) {
    await restart();
    return;
  }
  if (event.affectsConfiguration(`${SECTION}.enable`)) {
    await resync();
  }
  const options = explicitOptions();
  if (JSON.stringify(options) === JSON.stringify(sentOptions)) {
    return;
  }
  // The server merges what it gets over what it has: a setting taken away is only undone by
  // starting it afresh with its defaults.
  const removed = Object.keys(sentOptions).filter((key) => !(key in options));
  if (removed.length > 0 || client === undefined || client.state !== State.Running) {
    await restart();
    return;
  }
  sentOptions = options;
  await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: options } });
}

async function toggle(): Promise<void> {
  const settings = config();
  const seen = settings.inspect<boolean>('enabled');
  const target =
    seen?.workspaceFolderValue !== undefined
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : seen?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
  const on = !settings.get<boolean>('enabled', true);
  await settings.update('enabled', on, target);
  vscode.window.setStatusBarMessage(`fimlsp: inline completions ${on ? 'on' : 'off'}`, 2000);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionVersion = String(context.extension.packageJSON.version ?? '?');
  output = vscode.window.createOutputChannel('fimlsp', { log: true });
  status = new Status();
  nextEdits = new NextEdits({
    client: () => (client !== undefined && client.state === State.Running && status.ready ? client : undefined),
    serves: (document) => synced.has(document.uri.toString()) && enabledFor(document.languageId),
    mode: () => config().get<'auto' | 'manual' | 'off'>('nextEdits', 'auto'),
    log: output,
  });
  context.subscriptions.push(
    ...nextEdits.register(),
    output,
    status,
    vscode.commands.registerCommand('fimlsp.toggle', toggle),
    vscode.commands.registerCommand('fimlsp.trigger', () =>
      vscode.commands.executeCommand('editor.action.inlineSuggest.trigger'),
    ),
    vscode.commands.registerCommand('fimlsp.showLog', () => output.show(true)),
    vscode.commands.registerCommand('fimlsp.restart', restart),
    vscode.commands.registerCommand('fimlsp.showStats', async () => {
      await refreshStats();
      output.info(describe(status.stats));
      output.info(`stats: ${JSON.stringify(status.stats)}`);
      output.show(true);
    }),
    vscode.commands.registerCommand('fimlsp.acceptNextWord', () => acceptPart('word')),
    vscode.commands.registerCommand('fimlsp.acceptNextLine', () => acceptPart('line')),
    vscode.workspace.onDidChangeConfiguration((event) => void onConfigurationChanged(event)),
    // The workspace's own values of the restricted settings apply from now on: start afresh.
    vscode.workspace.onDidGrantWorkspaceTrust(() => void (client === undefined ? startWhenWanted() : restart())),
    vscode.workspace.onDidOpenTextDocument(() => void startWhenWanted()),
    vscode.workspace.onDidCloseTextDocument((document) => shown.delete(document.uri.toString())),
    vscode.window.onDidChangeActiveTextEditor((editor) => {
      status.render();
      refreshStatsLazily();
      warmSoon(editor);
    }),
    vscode.window.onDidChangeTextEditorSelection((event) => warmSoon(event.textEditor)),
  );
  await startWhenWanted();
}

export async function deactivate(): Promise<void> {
  await stop();
}
