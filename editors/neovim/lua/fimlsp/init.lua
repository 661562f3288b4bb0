-- fimlsp for Neovim: Copilot-style inline completions from a local fill-in-the-middle model.
--
--   require('fimlsp').setup({ server = { model = 'starcoderbase-1b' } })
--
-- Starts one `fimlsp serve` for the whole session (vim.lsp.start; vim.lsp.start_client on 0.7),
-- attaches it to file buffers, and shows its textDocument/inlineCompletion suggestions as ghost
-- text: with vim.lsp.inline_completion on Neovim 0.12+, with the plugin's own extmarks before
-- that (lua/fimlsp/ghost.lua). See :help fimlsp.

local compat = require('fimlsp.compat')
local ghost = require('fimlsp.ghost')
local builtin = require('fimlsp.builtin')
local nextedit = require('fimlsp.nextedit')
local definitions = require('fimlsp.definitions')

local api = vim.api
local M = {}

--- The plugin's version (the fimlsp release it belongs to); the server's is in fimlsp.stats.
M.version = '0.1.0'

-- stylua: ignore start
M.defaults = {
  -- How to start the server: the command and its arguments. `--model` etc. may go here too, but
  -- `server` below is the better place (it can change without a restart).
  cmd = { 'fimlsp', 'serve' },
  -- Extra environment variables for the server process, e.g. { CUDA_VISIBLE_DEVICES = '0' }.
  cmd_env = nil,
  -- Server options, sent as initializationOptions (camelCase or snake_case; `fimlsp options`
  -- lists them all), e.g. { model = 'starcoderbase-1b' }. Unset keys take the server's
  -- defaults, which are:
  --   model = 'tiny-starcoder',     -- preset, hub id or local directory
  --   multiline = 'auto',           -- 'auto' | 'always' | 'never'
  --   timeBudgetMs = 4000,          -- show what there is after this long
  --   device = 'auto', dtype = 'auto', quantization = 'auto', temperature = 0, topP = 1,
  --   neighbourShare = 0.15, logLevel = 'info',
  --   repoContext = true,           -- index root_dir for definitions from unopened files
  --   repoShare = 0.15, repoMaxFiles = 5000, repoIndexTimeoutS = 120,
  --   engine = 'local',             -- or 'openai' (vLLM), 'llamacpp', 'tgi', 'ollama'
  --   endpoint = nil,               -- e.g. 'http://gpu-box:8000/v1' (docs/deploy.md)
  --   servedModel = nil, apiKeyEnv = nil, tlsVerify = true, retries = 2,
  --   connectTimeoutMs = 3000
  server = {},
  -- Directory the server is started in (its LSP root); nil: Neovim's current directory.
  root_dir = nil,
  -- Filetypes to attach to; nil: every file buffer (those with a name and an empty 'buftype').
  filetypes = nil,
  -- Filetypes never attached to.
  exclude_filetypes = { 'help', 'gitrebase', 'netrw', 'qf', 'TelescopePrompt' },
  -- Optional function(bufnr) -> boolean, a last say on whether to attach to a buffer.
  should_attach = nil,
  -- Buffers over this many characters are not attached (with a message): the server keeps such
  -- a document in step but never completes in it (MAX_DOCUMENT_CHARS in fimlsp/documents.py),
  -- so sending it every change would cost both sides for nothing.
  max_document_chars = 8000000,
  -- Show suggestions at all (:FimlspEnable / :FimlspDisable change it at run time).
  enabled = true,
  -- Use Neovim's own vim.lsp.inline_completion: 'auto' = where it exists (0.12+); true; false =
  -- always the plugin's ghost text. The options below marked (ghost) apply only without it.
  builtin = 'auto',
  -- Ask for a suggestion while typing in insert mode; false: only with keymaps.trigger. (ghost)
  auto_trigger = true,
  -- Milliseconds without typing before a suggestion is requested. (ghost)
  debounce_ms = 75,
  -- Warm starts: when a buffer is entered, the model is ready, or the cursor rests in normal
  -- mode (CursorHold, after 'updatetime'), the server prefills the prompt at the cursor while
  -- the model is idle (fimlsp.warm), so the first keystroke there costs one token, not the
  -- whole window. Any real request stops it.
  warm = true,
  -- Send the server the definitions the buffer's other language servers know for the identifiers
  -- near the cursor (textDocument/definition, asked in the background while typing in insert
  -- mode; fimlsp.context), so a suggestion can use a signature from a library or an unopened
  -- file. Looked up again only when those identifiers change; at most `timeout_ms` each time.
  editor_definitions = { enabled = true, timeout_ms = 1000 },
  -- Insert-mode keys, buffer-local where fimlsp is attached; false or '' leaves one unmapped.
  -- When no suggestion is showing, a key does what it does without the plugin.
  keymaps = {
    accept = '<Tab>',            -- the whole suggestion
    accept_word = '<M-Right>',   -- its next word
    accept_line = '<M-C-Right>', -- the rest of its current line
    dismiss = '<C-]>',           -- hide it (and cancel the request in flight)
    next = '<M-]>',              -- show the next alternative suggestion (the server's list)
    previous = '<M-[>',          -- ... the previous one
    trigger = '<M-\\>',          -- ask now, even with auto_trigger = false (ghost)
  },
  -- Next-edit suggestions (the server's textDocument/copilotInlineEdit; they need a next-edit
  -- model such as Sweep's): a diff preview, FimlspNextEditDelete over the old text and
  -- FimlspNextEditAdd lines below it. :FimlspNextEdit asks, :FimlspNextEditJump goes there,
  -- :FimlspNextEditApply applies, :FimlspNextEditDismiss hides; any change hides it.
  next_edit = {
    auto = true, -- ask when the cursor rests in normal mode (CursorHold) after a change, and
                 -- after a whole suggestion is accepted
  },
  ghost = {
    hl_group = 'FimlspGhost', -- like Comment, grey italic in terminals where Comment has no colour
    max_lines = nil,          -- show at most this many lines of a suggestion (accept takes all)
  },
}
-- stylua: ignore end

M.config = vim.deepcopy(M.defaults)
--- The server's model state, from fimlsp.stats: 'stopped', 'starting', 'idle', 'loading',
--- 'ready' or 'failed' (then M.error says why).
M.state = 'stopped'
M.error = nil
--- What the server last said about itself (fimlsp.stats): version, model, device, dtype,
--- quantization; nil before it answered.
M.server = nil

local client_id = nil
local attached = {} -- bufnr -> true
local use_builtin = false
local poll_timer = nil
local group = nil
local warned_cmd = false
local set_up = false
local hidden = {} -- bufnr -> { [lhs] = the buffer's own mapping fimlsp's replaced }

local function notify(msg, level)
  vim.notify('fimlsp: ' .. msg, level or vim.log.levels.INFO)
end

local function buf_or_current(buf)
  return (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
end

--- The running client, if it is attached to `buf` (any buffer when `buf` is nil).
function M.client(buf)
  local client = compat.get_client(client_id)
  if client and (buf == nil or vim.lsp.buf_is_attached(buf_or_current(buf), client.id)) then
    return client
  end
  return nil
end

local function execute(client, command, arguments, handler)
  return compat.request(client, 'workspace/executeCommand',
    { command = command, arguments = arguments or {} },
    handler or function(err)
      if err then
        notify(command .. ': ' .. tostring(err.message or err), vim.log.levels.WARN)
      end
    end)
end

--- Asks the server to prefill the prompt at the cursor of the current window, if it shows `buf`
--- (fimlsp.warm); quietly nothing while the model is not ready.
function M.warm(buf)
  buf = buf_or_current(buf)
  local client = M.client(buf)
  if not (client and M.config.warm and M.config.enabled and M.state == 'ready')
      or api.nvim_get_current_buf() ~= buf then
    return false
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  execute(client, 'fimlsp.warm', { params.textDocument.uri, params.position }, function() end)
  return true
end

--- Calls `callback(err, stats)` with the server's counters and last request's timings
--- (fimlsp.stats: state, model, requests, accepted, prefill_ms, ...). False if not running.
function M.stats(callback)
  local client = M.client()
  if not client then
    return false
  end
  local ok = execute(client, 'fimlsp.stats', {}, function(err, result)
    if result and result.state then
      M._set_state(result.state, result.error)
    end
    if result and result.version then
      M.server = { version = result.version, model = result.model, device = result.device,
        dtype = result.dtype, quantization = result.quantization }
    end
    if callback then
      callback(err, result)
    end
  end)
  return ok and true or false
end

local function stop_polling()
  if poll_timer then
    poll_timer:stop()
    poll_timer:close()
    poll_timer = nil
  end
end

function M._set_state(state, err)
  if state == M.state then
    return
  end
  M.state, M.error = state, (err ~= vim.NIL and err or nil)
  pcall(vim.cmd, 'redrawstatus')
  if state == 'ready' then
    stop_polling()
    compat.user_event('FimlspReady')
    M.warm()
  elseif state == 'failed' then
    stop_polling()
    compat.user_event('FimlspFailed')
  end
end

--- Asks for the model's state until it is loaded, so that statuslines and the FimlspReady
--- event know (the server loads the model in the background after `initialized`).
local function poll_state()
  if poll_timer then
    return
  end
  local waiting = false
  poll_timer = compat.uv.new_timer()
  poll_timer:start(0, 250, vim.schedule_wrap(function()
    if not M.client() then
      return stop_polling()
    end
    if not waiting then
      waiting = M.stats(function()
        waiting = false
      end)
    end
  end))
end

local function termcodes(keys)
  return api.nvim_replace_termcodes(keys, true, true, true)
end

local function is_ours(mapping)
  return type(mapping.desc) == 'string' and mapping.desc:sub(1, 8) == 'fimlsp: '
end

local function find_mapping(mappings, lhs)
  local raw = termcodes(lhs)
  for _, mapping in ipairs(mappings) do
    if termcodes(mapping.lhs) == raw and not is_ours(mapping) then
      return mapping
    end
  end
end

--- The insert-mode mapping of `lhs` that fimlsp's buffer-local one hides: the buffer's own (as it
--- was before fimlsp mapped the key), else the global one, looked up when the key is pressed so
--- that a plugin mapping it after fimlsp (nvim-cmp, snippets, ...) is found too.
local function hidden_mapping(buf, lhs)
  return (hidden[buf] or {})[lhs] or find_mapping(api.nvim_get_keymap('i'), lhs)
end

local function feed(keys, remap)
  -- 'i': at the front of the typeahead, so the keys run right where the pressed key was.
  api.nvim_feedkeys(keys, remap and 'im' or 'in', false)
end

--- Does what `lhs` would do without fimlsp: runs the mapping fimlsp's hides, or the key itself.
local function fall_back(buf, lhs)
  local mapping = hidden_mapping(buf, lhs)
  if not mapping then
    return feed(termcodes(lhs), false)
  end
  local remap = mapping.noremap ~= 1
  if mapping.callback then
    if mapping.expr == 1 then
      local keys = mapping.callback()
      if type(keys) == 'string' and keys ~= '' then
        feed(mapping.replace_keycodes == 1 and termcodes(keys) or keys, remap)
      end
    else
      mapping.callback()
    end
  elseif mapping.rhs and mapping.rhs ~= '' then
    if mapping.expr == 1 then
      feed(vim.fn.eval(mapping.rhs), remap)
    else
      feed(termcodes(mapping.rhs), remap)
    end
  end
end

local function map_keys(buf)
  local names = { accept = 'all', accept_word = 'word', accept_line = 'line', dismiss = 'dismiss',
                  trigger = 'trigger', next = 'next', previous = 'previous' }
  hidden[buf] = hidden[buf] or {}
  for name, how in pairs(names) do
    local lhs = M.config.keymaps[name]
    if lhs and lhs ~= '' and not (use_builtin and name == 'trigger') then
      if hidden[buf][lhs] == nil then
        hidden[buf][lhs] = find_mapping(api.nvim_buf_get_keymap(buf, 'i'), lhs) or false
      end
      -- Not an <expr> mapping: the actions edit the buffer, and a key falling back to another
      -- mapping may run a callback that does too (textlock would forbid both).
      vim.keymap.set('i', lhs, function()
        local done
        if use_builtin then
          -- vim.lsp.inline_completion.get() only schedules its edit.
          if how == 'dismiss' then
            done = builtin.dismiss(buf)
          elseif how == 'next' or how == 'previous' then
            done = builtin.select(buf, how == 'next' and 1 or -1)
          else
            done = builtin.accept(buf, how, execute)
          end
        elseif how == 'trigger' or ghost.visible(buf) then
          done = M[name]() or how == 'trigger'
        end
        if not done then
          fall_back(buf, lhs)
        end
      end, { buffer = buf, silent = true, desc = 'fimlsp: ' .. name:gsub('_', ' ') })
    end
  end
end

local function on_attach(client, buf)
  attached[buf] = true
  map_keys(buf)
  nextedit.attach(buf, M.config.next_edit.auto)
  local warming = api.nvim_create_augroup('fimlsp_warm_' .. buf, { clear = true })
  api.nvim_create_autocmd({ 'BufEnter', 'CursorHold' }, { group = warming, buffer = buf,
    callback = function()
      M.warm(buf)
    end })
  -- The other language servers' definitions, for both UIs: on entering insert mode and as the
  -- identifiers before the cursor change (cheap when they do not: three lines scanned).
  local defs = api.nvim_create_augroup('fimlsp_definitions_' .. buf, { clear = true })
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, { group = defs,
    buffer = buf, callback = function()
      local d = M.config.editor_definitions
      if M.config.enabled and type(d) == 'table' and d.enabled then
        definitions.timeout_ms = d.timeout_ms or definitions.timeout_ms
        definitions.update(buf)
      end
    end })
  api.nvim_create_autocmd('BufUnload', { group = defs, buffer = buf, callback = function()
    definitions.detach(buf)
  end })
  if use_builtin then
    builtin.enable(buf, client.id, M.config.enabled)
  else
    api.nvim_clear_autocmds({ group = group, buffer = buf }) -- attached again after a restart
    local function on(events, fn)
      api.nvim_create_autocmd(events, { group = group, buffer = buf, callback = function()
        fn(buf)
      end })
    end
    on({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, ghost.on_change)
    on({ 'InsertLeave', 'BufLeave' }, ghost.dismiss)
    on({ 'BufUnload' }, function(b)
      ghost.detach(b)
      attached[b] = nil
      hidden[b] = nil
    end)
  end
  poll_state()
end

local function server_options()
  local options = M.config.server or {}
  return next(options) and options or vim.empty_dict()
end

local function client_config()
  local cmd = M.config.cmd
  if type(cmd) == 'string' then
    cmd = vim.split(cmd, '%s+', { trimempty = true })
  end
  return {
    name = 'fimlsp',
    cmd = cmd,
    cmd_env = M.config.cmd_env,
    root_dir = M.config.root_dir or compat.uv.cwd(),
    init_options = server_options(),
    on_attach = on_attach,
    on_init = function()
      M._set_state('starting')
    end,
    on_exit = function(code, signal, id)
      vim.schedule(function()
        if id ~= client_id then
          return
        end
        client_id = nil
        stop_polling()
        for buf in pairs(attached) do
          ghost.detach(buf)
        end
        attached = {}
        M.state, M.error = 'stopped', (code ~= 0 and ('exit code %d'):format(code) or nil)
      end)
    end,
  }
end

local too_large_told = {} -- bufnr -> true once the user was told

--- Whether `buf` holds more characters than the server completes in. Bytes first (cheap, and
--- never fewer than characters); characters are counted only for a buffer over it in bytes.
local function too_large(buf)
  local limit = M.config.max_document_chars
  if type(limit) ~= 'number' then
    return false
  end
  local lines = api.nvim_buf_line_count(buf)
  local bytes = api.nvim_buf_get_offset(buf, lines)
  if bytes <= limit then
    return false
  end
  local chars = api.nvim_buf_call(buf, function()
    return vim.fn.wordcount().chars
  end)
  if chars <= limit then
    return false
  end
  if not too_large_told[buf] then
    too_large_told[buf] = true
    notify(('not attached to %s: %d characters, over the server\'s limit of %d '
      .. '(max_document_chars)'):format(vim.fn.fnamemodify(api.nvim_buf_get_name(buf), ':t'),
        chars, limit), vim.log.levels.WARN)
  end
  return true
end

local function wanted(buf)
  if not api.nvim_buf_is_valid(buf) or not api.nvim_buf_is_loaded(buf) then
    return false
  end
  if vim.bo[buf].buftype ~= '' or api.nvim_buf_get_name(buf) == '' then
    return false
  end
  local ft = vim.bo[buf].filetype
  local c = M.config
  if c.filetypes and #c.filetypes > 0 and not vim.tbl_contains(c.filetypes, ft) then
    return false
  end
  if vim.tbl_contains(c.exclude_filetypes or {}, ft) then
    return false
  end
  if c.should_attach and not c.should_attach(buf) then
    return false
  end
  return not too_large(buf)
end

--- Before setup(), a command or action sets fimlsp up with the defaults (a plugin manager may
--- load the plugin lazily, on :FimlspEnable); nothing half-configured runs on each keystroke.
local function ensure_setup()
  if not set_up then
    M.setup(M.config)
  end
end

--- Starts the server if needed and attaches it to `buf` (current buffer by default) when the
--- buffer is one fimlsp serves. Returns the client id, or nil.
function M.attach(buf)
  if not set_up then
    ensure_setup() -- which attaches every buffer
    return client_id
  end
  buf = buf_or_current(buf)
  if not M.config.enabled or not wanted(buf) then
    return nil
  end
  if attached[buf] and M.client(buf) then
    return client_id
  end
  local config = client_config()
  if not compat.get_client(client_id) and vim.fn.executable(config.cmd[1] or '') ~= 1 then
    if not warned_cmd then
      warned_cmd = true
      notify(('cannot start the server: %s is not executable (`pipx install .` in a checkout of '
        .. 'fimlsp, see its README; or set cmd in setup())'):format(tostring(config.cmd[1])),
        vim.log.levels.WARN)
    end
    return nil
  end
  if M.state == 'stopped' then
    M.state = 'starting'
  end
  local id = compat.start(config, buf, client_id)
  if id then
    client_id = id
  end
  return id
end

--- FimlspGhost, unless the user or their colorscheme defined it: linked to Comment where Comment
--- has a terminal colour; where it has none (Neovim 0.10+'s default colorscheme colours Comment
--- for 'termguicolors' only) ghost text would look exactly like typed text in a terminal, so it
--- gets grey italics there and keeps Comment's GUI colour.
function M.define_highlight()
  nextedit.define_highlight()
  local comment = vim.fn.synIDtrans(vim.fn.hlID('Comment'))
  if comment ~= 0 and vim.fn.synIDattr(comment, 'fg', 'cterm') ~= '' then
    vim.cmd('highlight default link FimlspGhost Comment')
    return
  end
  local gui = comment ~= 0 and vim.fn.synIDattr(comment, 'fg#', 'gui') or ''
  vim.cmd('highlight default FimlspGhost ctermfg=8 cterm=italic'
    .. (gui:match('^#%x+$') and (' guifg=' .. gui) or ' guifg=Grey gui=italic'))
end

function M.setup(user)
  set_up = true
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), user or {})
  local c = M.config
  if c.builtin == 'auto' then
    use_builtin = builtin.available()
  else
    use_builtin = c.builtin == true and builtin.available()
  end
  ghost.configure({ config = c, client_for = M.client, execute = execute })
  nextedit.configure({ client_for = M.client, execute = execute })
  definitions.configure({ client_for = M.client, execute = execute })
  group = api.nvim_create_augroup('fimlsp', { clear = true })
  M.define_highlight()
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = M.define_highlight })
  api.nvim_create_autocmd({ 'FileType', 'BufEnter' }, {
    group = group,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for buf in pairs(attached) do -- setup() again: keys and autocommands with the new config
    local client = M.client(buf)
    if client and api.nvim_buf_is_valid(buf) then
      on_attach(client, buf)
    end
  end
  for _, buf in ipairs(api.nvim_list_bufs()) do
    M.attach(buf)
  end
  return M
end

-- Actions: each returns true when it did something, so custom mappings can fall back.

--- Next edits: ask at the cursor, jump to the one shown, apply it, hide it.
function M.next_edit()
  return set_up and M.config.enabled and nextedit.request(0) or false
end

function M.next_edit_jump()
  return nextedit.jump(0)
end

function M.next_edit_apply()
  return nextedit.apply(0)
end

function M.next_edit_dismiss()
  return nextedit.dismiss(0)
end

function M.trigger()
  if not set_up or use_builtin or not M.config.enabled then
    return false
  end
  return ghost.request(0)
end

--- Accepts 'all', the next 'word' or the rest of the 'line' of the suggestion shown.
local function accept(what)
  if not set_up then
    return false
  end
  local accepted
  if use_builtin then
    accepted = builtin.accept(0, what, execute)
  else
    accepted = ghost.accept(0, what)
  end
  if accepted and what == 'all' and M.config.next_edit.auto then
    -- An accepted suggestion is a pause worth a next edit (it yields to the next completion).
    local buf = api.nvim_get_current_buf()
    vim.schedule(function()
      nextedit.request(buf)
    end)
  end
  return accepted
end

function M.accept()
  return accept('all')
end

function M.accept_word()
  return accept('word')
end

function M.accept_line()
  return accept('line')
end

--- Shows the next / previous alternative to the suggestion showing; false when none shows.
local function cycle(step)
  if not set_up then
    return false
  end
  if use_builtin then
    return builtin.select(0, step)
  end
  return ghost.cycle(0, step)
end

function M.next()
  return cycle(1)
end

function M.previous()
  return cycle(-1)
end

function M.dismiss()
  if not set_up then
    return false
  end
  if use_builtin then
    return builtin.dismiss(0)
  end
  return ghost.dismiss(0)
end

--- Whether a suggestion is showing in `buf` (plugin ghost text only).
function M.visible(buf)
  return not use_builtin and ghost.visible(buf) or false
end

--- The suggestion showing: { text = what is left to accept, item = the LSP item } or nil.
function M.suggestion(buf)
  return not use_builtin and ghost.suggestion(buf) or nil
end

function M.enable()
  ensure_setup()
  M.config.enabled = true
  for buf in pairs(attached) do
    if use_builtin then
      builtin.enable(buf, client_id, true)
    end
  end
  M.attach(0)
end

function M.disable()
  ensure_setup()
  M.config.enabled = false
  for buf in pairs(attached) do
    if use_builtin then
      builtin.enable(buf, client_id, false)
    else
      ghost.dismiss(buf)
    end
  end
end

function M.toggle()
  ensure_setup()
  if M.config.enabled then
    M.disable()
  else
    M.enable()
  end
end

--- Stops the server; it starts again on the next buffer fimlsp attaches to (or right away for
--- the current buffer when `start_again`).
function M.stop(start_again)
  ensure_setup()
  local client = compat.get_client(client_id)
  client_id = nil
  stop_polling()
  for buf in pairs(attached) do
    ghost.detach(buf)
  end
  attached = {}
  M.state = 'stopped'
  if client then
    compat.stop(client)
  end
  if start_again then
    M.attach(0)
  end
end

--- Changes server options at run time (workspace/didChangeConfiguration); a new model reloads.
function M.configure(server)
  M.config.server = vim.tbl_deep_extend('force', M.config.server or {}, server or {})
  local client = M.client()
  if client then
    compat.notify(client, 'workspace/didChangeConfiguration',
                  { settings = { fimlsp = server_options() } })
  end
end

--- Plain facts for :FimlspStatus and tests.
function M.status()
  local buf = api.nvim_get_current_buf()
  return {
    enabled = M.config.enabled,
    state = M.state,
    error = M.error,
    client_id = client_id,
    attached = M.client(buf) ~= nil,
    ui = use_builtin and 'vim.lsp.inline_completion' or
      (compat.inline_virt_text and 'ghost text (inline)' or 'ghost text (end of line)'),
    counters = vim.deepcopy(ghost.counters),
    definitions = vim.deepcopy(definitions.counters),
  }
end

--- For 'statusline': '' when not attached, else e.g. 'fimlsp: ready'.
function M.statusline()
  if not M.client(0) then
    return ''
  end
  return 'fimlsp: ' .. (M.config.enabled and M.state or 'off')
end

--- The server's `fimlsp.stats`, waiting up to `timeout_ms` (for :checkhealth); nil if not running.
function M.stats_sync(timeout_ms)
  local client = M.client()
  if not client then
    return nil
  end
  local answer = compat.request_sync(client, 'workspace/executeCommand',
    { command = 'fimlsp.stats', arguments = {} }, timeout_ms or 2000)
  return answer and answer.result or nil
end

--- One line on the server: its version, the model and where and how it runs.
function M.describe_server(stats)
  local function value(v)
    return (v == nil or v == vim.NIL) and '?' or tostring(v)
  end
  return ('fimlsp %s, model %s on %s (quantization %s)'):format(value(stats.version),
    value(stats.model), value(stats.device), value(stats.quantization))
end

--- :FimlspStatus
function M.show_status()
  local s = M.status()
  local lines = {
    ('fimlsp.nvim %s: %s, %s, %s'):format(M.version, s.enabled and 'enabled' or 'disabled', s.ui,
      s.attached and ('client %d'):format(s.client_id) or 'not attached to this buffer'),
    'model: ' .. s.state .. (s.error and (' (' .. s.error .. ')') or ''),
  }
  local function show(stats)
    if stats then
      table.insert(lines, 'server: ' .. M.describe_server(stats))
      table.insert(lines, ('%s requests, %s cancelled, %s accepted, %s partly'):format(
        tostring(stats.requests), tostring(stats.cancelled), tostring(stats.accepted),
        tostring(stats.partially_accepted)))
      if type(stats.prompt_tokens) == 'number' then
        table.insert(lines, ('last request: %d prompt tokens (%s reused), prefill %s ms, '
          .. 'decode %s ms, %s tokens'):format(stats.prompt_tokens, tostring(stats.reused_tokens),
          tostring(stats.prefill_ms), tostring(stats.decode_ms),
          tostring(stats.generated_tokens)))
      end
    end
    notify(table.concat(lines, '\n'))
  end
  if not M.stats(function(_, stats)
    vim.schedule(function()
      show(stats)
    end)
  end) then
    show(nil)
  end
end

return M
