// Next-edit suggestions in VS Code: the server's `textDocument/copilotInlineEdit` (GitHub
// Copilot's method), shown as an inline diff.
//
// VS Code's own next-edit UI (inline edits shown away from the cursor) is a proposed API
// (`inlineCompletionsAdditions`), which an extension on the marketplace cannot use; the stable
// API (engines ^1.91) only shows inline completions at the cursor. So the edit is drawn with
// decorations: the text it replaces struck through, the new text right after it, the whole new
// text in the hover. Tab goes to it, Tab again applies it, Escape dismisses it (also commands).
// An edit applies to one document version only: any change hides it, and applying passes the
// version to VS Code's edit, which refuses if the document moved on, so a stale edit never
// touches the text. Asked for when typing pauses after a change and after a suggestion is
// accepted (`fimlsp.nextEdits: auto`), and by the command `fimlsp: Suggest the next edit`.
import * as vscode from 'vscode';
import { ExecuteCommandRequest, LanguageClient } from 'vscode-languageclient/node';

export const METHOD = 'textDocument/copilotInlineEdit';
/** How long the text must rest after a change before a next edit is asked for: one keystroke's
 * pause is not a pause, and each request costs a rewrite of the region on the model. */
export const IDLE_MS = 700;
const VISIBLE = 'fimlsp.nextEditVisible';
// LSP's inline completion trigger kinds, which the request's `context` borrows.
const INVOKED = 1;
const AUTOMATIC = 2;

/** One edit as the server sends it (Copilot's shape). */
type WireEdit = {
  text: string;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  textDocument: { uri: string; version: number };
  command?: { title: string; command: string; arguments?: unknown[] };
};

/** What the extension gives this module. */
export interface Host {
  /** The language client when it is running and its model ready, else undefined. */
  client(): LanguageClient | undefined;
  /** Whether the server has this document open and suggestions are on for its language. */
  serves(document: vscode.TextDocument): boolean;
  /** `fimlsp.nextEdits`: ask by itself ('auto') or only on the command ('manual'), or never. */
  mode(): 'auto' | 'manual' | 'off';
  log: vscode.LogOutputChannel;
}

type Shown = { editor: vscode.TextEditor; version: number; range: vscode.Range; text: string; wire: WireEdit };

export class NextEdits implements vscode.Disposable {
  private shown: Shown | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pending: vscode.CancellationTokenSource | undefined;
  private sequence = 0;
  private readonly removed = vscode.window.createTextEditorDecorationType({
    textDecoration: 'line-through',
    backgroundColor: new vscode.ThemeColor('diffEditor.removedTextBackground'),
    border: '1px solid',
    borderColor: new vscode.ThemeColor('diffEditor.removedTextBorder'),
  });
  private readonly inserted = vscode.window.createTextEditorDecorationType({
    after: {
      backgroundColor: new vscode.ThemeColor('diffEditor.insertedTextBackground'),
      border: '1px solid',
      borderColor: new vscode.ThemeColor('diffEditor.insertedTextBorder'),
      margin: '0 0 0 2px',
    },
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });

  constructor(private readonly host: Host) {}

  register(): vscode.Disposable[] {
    return [
      this,
      vscode.commands.registerCommand('fimlsp.suggestNextEdit', () => this.ask(INVOKED)),
      vscode.commands.registerCommand('fimlsp.applyNextEdit', () => this.apply()),
      vscode.commands.registerCommand('fimlsp.dismissNextEdit', () => this.dismiss()),
      vscode.commands.registerCommand('fimlsp.jumpToNextEdit', () => this.jump()),
      vscode.commands.registerCommand('fimlsp.tabNextEdit', () => this.tab()),
      vscode.workspace.onDidChangeTextDocument((event) => this.changed(event)),
      vscode.workspace.onDidCloseTextDocument((document) => {
        if (this.shown?.editor.document === document) {
          this.dismiss();
        }
      }),
    ];
  }

  /** A suggestion was accepted: a pause worth a next edit, once the insertion has settled. */
  accepted(): void {
    if (this.host.mode() === 'auto') {
      this.schedule();
    }
  }

  private changed(event: vscode.TextDocumentChangeEvent): void {
    if (event.contentChanges.length === 0) {
      return; // a dirty-state change only
    }
    if (this.shown !== undefined && this.shown.editor.document === event.document) {
      this.dismiss(); // made for the text before this change
    }
    const editor = vscode.window.activeTextEditor;
    if (this.host.mode() === 'auto' && editor?.document === event.document) {
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.ask(AUTOMATIC);
    }, IDLE_MS);
  }

  /** Asks the server for the next edit at the cursor of the active editor and shows it. */
  async ask(trigger: number = INVOKED): Promise<boolean> {
    const editor = vscode.window.activeTextEditor;
    const client = this.host.client();
    if (editor === undefined || client === undefined || !this.host.serves(editor.document) || this.host.mode() === 'off') {
      if (trigger === INVOKED) {
        vscode.window.setStatusBarMessage('fimlsp: no next edits here', 3000);
      }
      return false;
    }
    if (trigger === INVOKED && this.timer !== undefined) {
      clearTimeout(this.timer); // asked outright: no question of its own behind it
      this.timer = undefined;
    }
    this.pending?.cancel(); // the newest question wins
    const source = new vscode.CancellationTokenSource();
    this.pending = source;
    const sequence = ++this.sequence;
    const document = editor.document;
    const version = document.version;
    const position = editor.selection.active;
    let answer: { edits?: WireEdit[] } | null;
    try {
      answer = await client.sendRequest<{ edits?: WireEdit[] } | null>(
        METHOD,
        {
          textDocument: { uri: client.code2ProtocolConverter.asUri(document.uri), version },
          position: client.code2ProtocolConverter.asPosition(position),
          context: { triggerKind: trigger },
        },
        source.token,
      );
    } catch (error) {
      if (!source.token.isCancellationRequested) {
        this.host.log.warn(`next edit: ${error}`);
      }
      return false;
    } finally {
      if (this.pending === source) {
        this.pending = undefined;
      }
      source.dispose();
    }
    const edit = answer?.edits?.[0];
    if (sequence !== this.sequence) {
      if (edit !== undefined) {
        this.host.log.info(`next edit for ${document.uri.toString()} dropped: asked again since`);
      }
      return false;
    }
    if (edit === undefined) {
      if (trigger === INVOKED) {
        vscode.window.setStatusBarMessage('fimlsp: no next edit', 3000);
      }
      return false;
    }
    if (document.version !== version || edit.textDocument?.version !== version || document.isClosed) {
      this.host.log.info(
        `next edit for ${document.uri.toString()} version ${edit.textDocument?.version} dropped: ` +
          `the document is at version ${document.version}`,
      );
      return false;
    }
    const target = vscode.window.visibleTextEditors.find((e) => e.document === document);
    if (target === undefined) {
      return false;
    }
    this.show(target, version, client.protocol2CodeConverter.asRange(edit.range), edit);
    return true;
  }

  private show(editor: vscode.TextEditor, version: number, range: vscode.Range, wire: WireEdit): void {
    this.dismiss();
    const text = wire.text;
    const document = editor.document;
    // The new version of the lines the edit touches, for the hover.
    const before = document.getText(new vscode.Range(range.start.line, 0, range.start.line, range.start.character));
    const after = document.getText(new vscode.Range(range.end, document.lineAt(range.end.line).range.end));
    const hover = new vscode.MarkdownString();
    hover.appendMarkdown('**fimlsp: next edit** — Tab goes there, Tab again applies it, Escape dismisses it\n');
    hover.appendCodeblock(before + text + after, document.languageId);
    // The new text on one line: line breaks as ⏎ (the hover has it whole).
    const flat = text.replace(/\r\n|\r|\n/g, ' ⏎ ');
    const removed: vscode.DecorationOptions[] = range.isEmpty ? [] : [{ range, hoverMessage: hover }];
    const inserted: vscode.DecorationOptions[] = [
      {
        range: new vscode.Range(range.end, range.end),
        hoverMessage: hover,
        renderOptions: { after: { contentText: flat.length > 0 ? flat : ' ' } },
      },
    ];
    editor.setDecorations(this.removed, removed);
    editor.setDecorations(this.inserted, inserted);
    this.shown = { editor, version, range, text, wire };
    void vscode.commands.executeCommand('setContext', VISIBLE, true);
  }

  /** Hides the edit on show; true if there was one. */
  dismiss(): boolean {
    const shown = this.shown;
    if (shown === undefined) {
      return false;
    }
    this.shown = undefined;
    shown.editor.setDecorations(this.removed, []);
    shown.editor.setDecorations(this.inserted, []);
    void vscode.commands.executeCommand('setContext', VISIBLE, false);
    return true;
  }

  /** Moves the cursor to the edit on show; false if none, or the cursor is there already. */
  jump(): boolean {
    const shown = this.shown;
    if (shown === undefined || vscode.window.activeTextEditor !== shown.editor) {
      return false;
    }
    if (shown.editor.selection.isEmpty && shown.editor.selection.active.isEqual(shown.range.start)) {
      return false;
    }
    shown.editor.selection = new vscode.Selection(shown.range.start, shown.range.start);
    shown.editor.revealRange(shown.range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    return true;
  }

  /** Tab: to the edit first, then apply it. */
  async tab(): Promise<boolean> {
    const shown = this.shown;
    if (shown === undefined) {
      return false;
    }
    const line = shown.editor.selection.active.line;
    if (line < shown.range.start.line || line > shown.range.end.line) {
      return this.jump();
    }
    return this.apply();
  }

  /** Applies the edit on show if its document is still at the version it was made for. */
  async apply(): Promise<boolean> {
    const shown = this.shown;
    this.dismiss();
    if (shown === undefined) {
      vscode.window.setStatusBarMessage('fimlsp: no next edit to apply', 3000);
      this.host.log.info('next edit: none on show to apply');
      return false;
    }
    const { editor, version, range, text } = shown;
    if (editor.document.isClosed || editor.document.version !== version) {
      vscode.window.setStatusBarMessage('fimlsp: the document changed; the next edit is dropped', 3000);
      return false;
    }
    // editor.edit is checked against the document's version where it is applied: a keystroke
    // that lands in between makes it fail instead of editing text the edit was not made for.
    const applied = await editor.edit((builder) => builder.replace(range, text));
    if (!applied) {
      vscode.window.setStatusBarMessage('fimlsp: the document changed; the next edit is dropped', 3000);
      return false;
    }
    const lines = text.split(/\r\n|\r|\n/);
    const end =
      lines.length === 1
        ? range.start.translate(0, text.length)
        : new vscode.Position(range.start.line + lines.length - 1, lines[lines.length - 1].length);
    editor.selection = new vscode.Selection(end, end);
    const command = shown.wire.command;
    const client = this.host.client();
    if (command !== undefined && client !== undefined) {
      client
        .sendRequest(ExecuteCommandRequest.type, { command: command.command, arguments: command.arguments })
        .catch((error) => this.host.log.debug(`${command.command} failed: ${error}`));
    }
    return true;
  }

  dispose(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
    }
    this.pending?.cancel();
    this.dismiss();
    this.removed.dispose();
    this.inserted.dispose();
  }
}
