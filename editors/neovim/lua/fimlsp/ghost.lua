-- The plugin's own inline completion UI, for Neovim without vim.lsp.inline_completion (< 0.12).
--
-- Per buffer: a debounce timer, at most one request in flight (a newer one cancels it with
-- $/cancelRequest), and at most one suggestion, drawn as an extmark at the cursor: inline virtual
-- text on 0.10+, end-of-line virtual text on older versions, the suggestion's further lines as
-- virtual lines. A suggestion is anchored where its range starts; while the text typed since the
-- anchor is a prefix of it, the rest stays on screen without a new request ("typing through"),
-- which is also how partial accepts keep what is left.

local compat = require('fimlsp.compat')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('fimlsp')

local METHOD = 'textDocument/inlineCompletion'
local TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2 -- LSP 3.18 InlineCompletionTriggerKind

--- Counters for tests and :FimlspStatus; never reset.
M.counters = { requests = 0, cancelled = 0, stale = 0, answered = 0, shown = 0, errors = 0 }

local opts = {} -- set by M.configure: config, client_for(buf), execute(client, command, args)
local states = {} -- bufnr -> state

local function state(buf)
  local st = states[buf]
  if not st then
    st = { seq = 0 }
    states[buf] = st
  end
  return st
end

function M.configure(o)
  opts = o
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function stop_timer(st)
  if st.timer then
    st.timer:stop()
    st.timer:close()
    st.timer = nil
  end
end

--- Forgets the request in flight, telling the server to stop working on it.
local function cancel(buf)
  local st = state(buf)
  stop_timer(st)
  st.seq = st.seq + 1 -- any answer still on its way is now stale
  local inflight = st.inflight
  st.inflight = nil
  if inflight then
    local client = compat.get_client(inflight.client_id)
    if client then
      pcall(compat.cancel_request, client, inflight.id)
    end
    M.counters.cancelled = M.counters.cancelled + 1
  end
end

local function clear(buf)
  local st = state(buf)
  st.item = nil
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

--- The suggestion in `buf` and the text typed since its anchor, when the suggestion still
--- applies at the cursor (same window, typed text a prefix of it, something left to show).
local function current(buf)
  local st = states[buf]
  local item = st and st.item
  if not item or api.nvim_get_current_buf() ~= buf then
    return nil
  end
  local row, col = cursor()
  if row < item.row or (row == item.row and col < item.col) then
    return nil
  end
  local ok, lines = pcall(api.nvim_buf_get_text, buf, item.row, item.col, row, col, {})
  if not ok then
    return nil
  end
  local typed = table.concat(lines, '\n')
  if item.text:sub(1, #typed) ~= typed or #item.text == #typed then
    return nil
  end
  return item, typed
end

local function display(text)
  local spaces = string.rep(' ', vim.bo.tabstop > 0 and vim.bo.tabstop or 8)
  return (text:gsub('\t', spaces):gsub('[%z\1-\31\127]', ''))
end

--- Draws what is left of the suggestion at the cursor; clears it when it no longer applies.
local function render(buf)
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local item, typed = current(buf)
  if not item then
    state(buf).item = nil
    return false
  end
  local hl = opts.config.ghost.hl_group
  local lines = vim.split(item.text:sub(#typed + 1), '\n', { plain = true })
  local max = opts.config.ghost.max_lines
  if max and max > 0 and #lines > max then
    lines = { unpack(lines, 1, max) }
  end
  local row, col = cursor()
  local mark = { hl_mode = 'combine', priority = 200 }
  local first = display(lines[1])
  if first ~= '' then
    mark.virt_text = { { first, hl } }
    if compat.inline_virt_text then
      mark.virt_text_pos = 'inline'
    else
      -- Old Neovim: at the end of the line, draw over the empty cells after the cursor (looks
      -- the same as inline); with text after the cursor, after the line's end.
      local line = api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
      mark.virt_text_pos = col >= #line and 'overlay' or 'eol'
    end
  end
  if #lines > 1 then
    mark.virt_lines = {}
    for i = 2, #lines do
      table.insert(mark.virt_lines, { { display(lines[i]), hl } })
    end
  end
  state(buf).extmark = api.nvim_buf_set_extmark(buf, M.ns, row, col, mark)
  return true
end

--- The usable items of a result, in the server's order: { raw = item, text = its text }.
--- The first is the suggestion; the others are its alternatives (cycled with next/previous).
local function usable(result)
  local found = {}
  local items = result and (result.items or result) or {}
  for _, raw in ipairs(items) do
    local text = raw.insertText
    if type(text) == 'table' then
      text = text.value -- a snippet: shown and inserted as its plain text
    end
    if type(text) == 'string' and text ~= '' then
      table.insert(found, { raw = raw, text = text })
    end
  end
  return found
end

--- Buffer lines hold no line break characters whatever 'fileformat' says; the server writes
--- suggestions with the document's own breaks (\r\n in a CRLF file), which would go in as
--- literal ^M. Returns the text with \n breaks and how many characters the server's had more
--- per break (for fimlsp.partialAccept, which counts in the server's text).
local function plain_breaks(text)
  local crlf = text:find('\r\n', 1, true) ~= nil
  return (text:gsub('\r\n', '\n'):gsub('\r', '\n')), crlf and 1 or 0
end
M.plain_breaks = plain_breaks

--- Shows item `pick` (default 1, wrapping around) of the usable items of an inlineCompletion
--- `result` for the cursor at (`row`, `col`) in `buf` (the current buffer); `client` is the one
--- that answered. The others stay at hand for `M.cycle`. Returns true if shown.
function M.receive(buf, client, result, row, col, pick)
  local list = usable(result)
  if #list == 0 then
    return false
  end
  local index = ((pick or 1) - 1) % #list + 1
  state(buf).choices = { client = client, list = list, row = row, col = col }
  return M.show(buf, client, list[index], row, col, index, #list)
end

--- Shows `choice` ({ raw, text }), number `index` of `count`, anchored at (`row`, `col`).
function M.show(buf, client, choice, row, col, index, count)
  local raw, text = choice.raw, choice.text
  local encoding = client.offset_encoding
  local break_extra
  text, break_extra = plain_breaks(text)
  local item = { text = text, row = row, col = col, extra = 0, command = raw.command,
                 client_id = client.id, raw = raw, break_extra = break_extra,
                 index = index or 1, count = count or 1 }
  if raw.range then
    local s, e = raw.range.start, raw.range['end']
    local line = api.nvim_buf_get_lines(buf, s.line, s.line + 1, false)[1] or ''
    item.row, item.col = s.line, compat.byte_col(line, s.character, encoding)
    if e.line == row then
      local end_col = compat.byte_col(api.nvim_get_current_line(), e.character, encoding)
      item.extra = math.max(end_col - col, 0) -- text after the cursor the item replaces
    end
  end
  state(buf).item = item
  if render(buf) then
    M.counters.shown = M.counters.shown + 1
    return true
  end
  return false
end

--- Asks the server for a suggestion at the cursor of the current window (which shows `buf`);
--- `pick`: which of the answer's items to show (cycling). Returns false when no client is
--- attached.
function M.request(buf, kind, pick)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local client = opts.client_for(buf)
  if not client or api.nvim_get_current_buf() ~= buf then
    return false
  end
  cancel(buf)
  local st = state(buf)
  local seq = st.seq
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(buf)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or TRIGGER_INVOKED }
  local ok, id = compat.request(client, METHOD, params, function(err, result)
    if st.inflight and st.inflight.seq == seq then
      st.inflight = nil
    end
    if seq ~= st.seq or not api.nvim_buf_is_valid(buf) then
      M.counters.stale = M.counters.stale + 1
      return
    end
    M.counters.answered = M.counters.answered + 1
    if err then
      M.counters.errors = M.counters.errors + 1
      M.last_error = tostring(err.message or err)
      return
    end
    local r, c = cursor()
    if api.nvim_get_current_buf() ~= buf or api.nvim_buf_get_changedtick(buf) ~= tick
        or r ~= row or c ~= col then
      M.counters.stale = M.counters.stale + 1
      return
    end
    M.receive(buf, client, result, row, col, pick)
  end, buf)
  if ok and id then
    st.inflight = { client_id = client.id, id = id, seq = seq }
    M.counters.requests = M.counters.requests + 1
  end
  return ok and true or false
end

--- Text typed or changed, or the cursor moved, in insert mode.
function M.on_change(buf)
  if not opts.config.enabled then
    return
  end
  if states[buf] and states[buf].item then
    if render(buf) then
      return -- still applies: typed through it, or a partial accept
    end
    clear(buf)
  end
  cancel(buf)
  if not opts.config.auto_trigger then
    return
  end
  local st = state(buf)
  local timer = compat.uv.new_timer()
  st.timer = timer
  timer:start(opts.config.debounce_ms, 0, vim.schedule_wrap(function()
    if st.timer ~= timer then
      return -- superseded by a later keystroke (which closed this timer)
    end
    stop_timer(st)
    local mode = api.nvim_get_mode().mode
    if mode:sub(1, 1) == 'i' and api.nvim_get_current_buf() == buf and opts.config.enabled then
      M.request(buf, TRIGGER_AUTOMATIC)
    end
  end))
end

--- Hides the suggestion and cancels any request; true if a suggestion was showing.
function M.dismiss(buf)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local shown = current(buf) ~= nil
  cancel(buf)
  clear(buf)
  return shown
end

function M.detach(buf)
  if states[buf] then
    M.dismiss(buf)
    states[buf] = nil
  end
end

--- The next word of `s`: leading blanks plus a run of word characters or of punctuation; at a
--- line break, the break and the next line's indentation.
function M.next_word(s)
  if s:sub(1, 1) == '\n' then
    return s:match('^\n[ \t]*')
  end
  return s:match('^[ \t]*[%w_]+') or s:match('^[ \t]*[^%w_%s]+') or s:match('^[ \t]+') or s:sub(1, 1)
end

--- The rest of the current line of `s`; at a line break, the break and the whole next line.
function M.next_line(s)
  if s:sub(1, 1) == '\n' then
    return '\n' .. s:sub(2):match('^[^\n]*')
  end
  return s:match('^[^\n]*')
end

--- Inserts `text` at the cursor (replacing `extra` bytes after it) and moves the cursor after it.
function M.insert(buf, text, extra)
  local row, col = cursor()
  local lines = vim.split(text, '\n', { plain = true })
  local line = api.nvim_get_current_line()
  local end_col = math.min(col + (extra or 0), #line)
  api.nvim_buf_set_text(buf, row, col, row, end_col, lines)
  local new_row = row + #lines - 1
  local new_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { new_row + 1, new_col })
end

--- Accepts the suggestion: `how` is 'all', 'word' or 'line'. Returns false when there is none.
function M.accept(buf, how)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local item, typed = current(buf)
  if not item then
    return false
  end
  local rest = item.text:sub(#typed + 1)
  local piece = rest
  if how == 'word' then
    piece = M.next_word(rest)
  elseif how == 'line' then
    piece = M.next_line(rest)
  end
  if piece == nil or piece == '' then
    piece = rest
  end
  local whole = #piece == #rest
  cancel(buf)
  if whole then
    clear(buf)
  end
  M.insert(buf, piece, whole and item.extra or 0)
  local client = compat.get_client(item.client_id)
  local command = item.command
  if client and command and command.command then
    if whole then
      opts.execute(client, command.command, command.arguments)
    elseif command.command == 'fimlsp.accept' then
      -- Counted from the start of the suggestion, like VS Code's acceptedLength, in the
      -- server's text (a CRLF break is two characters there).
      local args = command.arguments or {}
      local taken = typed .. piece
      local _, breaks = taken:gsub('\n', '')
      opts.execute(client, 'fimlsp.partialAccept',
                   { args[1], vim.fn.strchars(taken) + breaks * (item.break_extra or 0) })
    end
  end
  if not whole then
    render(buf)
  end
  return true
end

--- Shows the next (`step` 1) or previous (-1) alternative to the suggestion showing. The server
--- computes alternatives after it sent the suggestion, so the first cycle asks again at the
--- cursor (invoked: the server waits for the alternatives being computed there) and shows the
--- item after the first; then, while nothing was typed, the list answered is cycled here.
--- Returns false when no suggestion is showing.
function M.cycle(buf, step)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local item, typed = current(buf)
  if not item then
    return false
  end
  local st = state(buf)
  local choices = st.choices
  if typed == '' and item.count > 1 and choices and choices.list[item.index]
      and choices.list[item.index].raw == item.raw then
    local index = (item.index - 1 + step) % item.count + 1
    return M.show(buf, choices.client, choices.list[index], choices.row, choices.col, index,
                  item.count)
  end
  return M.request(buf, TRIGGER_INVOKED, 1 + step)
end

--- What is showing in `buf`: { text = the part not yet typed or accepted, item = the LSP item,
--- index, count = which of the answer's items it is (alternatives) }.
function M.suggestion(buf)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local item, typed = current(buf)
  if not item then
    return nil
  end
  return { text = item.text:sub(#typed + 1), item = item.raw, typed = typed, index = item.index,
           count = item.count }
end

function M.visible(buf)
  return current((buf == nil or buf == 0) and api.nvim_get_current_buf() or buf) ~= nil
end

return M
