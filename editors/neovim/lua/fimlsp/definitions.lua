-- The definitions the buffer's *other* language servers know for the identifiers near the cursor
-- (textDocument/definition, as "go to definition" asks), sent to fimlsp with `fimlsp.context`:
-- the server ranks them above its own workspace index, so a suggestion can use a signature from a
-- library or from a file the index never read.
--
-- Never in the way of typing: the lookups are asynchronous, each other server gets one request
-- per identifier, and whatever has not answered after `timeout_ms` is cancelled; what came back
-- is sent then. Looked up again only when the identifiers change (crossing a word, not typing
-- one), so the prompt, and with it the model's cache, stays the same while the user types.
-- The definitions' text is read from a loaded buffer or from the file, as the user: a file the
-- user cannot read is left out; the server's own caps (MAX_EDITOR_DEFINITIONS, MAX_EDITOR_CHARS)
-- bound what it keeps, and the limits here keep the message small before it is sent.

local compat = require('fimlsp.compat')

local api = vim.api
local M = {}

M.NAMES = 6 -- identifiers looked up: the cursor's line (the word being typed left out) and the two
-- lines above, nearest first; as the VS Code extension does
M.LINES = 14 -- of each definition, as the server's own index shows them
M.MAX_CHARS = 4000 -- of each definition's text (the server keeps no more: MAX_EDITOR_CHARS)
M.MAX_FILE_BYTES = 4 * 1024 * 1024 -- larger files are not read for a definition
M.timeout_ms = 1000

--- For tests and :FimlspStatus: lookups started, definitions requests sent, `fimlsp.context`
--- messages sent, requests that timed out; never reset.
M.counters = { lookups = 0, requests = 0, sent = 0, timed_out = 0 }

local opts = {} -- set by M.configure: client_for(buf), execute(client, command, args, handler)
local states = {} -- bufnr -> { key = names last looked up, seq, pending = { { client, id } } }

function M.configure(o)
  opts = o
end

--- The identifiers near (`row`, `col`) (0-based, byte column): { name, row, col (byte) }.
function M.names_near(buf, row, col)
  local first = math.max(0, row - 2)
  local lines = api.nvim_buf_get_lines(buf, first, row + 1, false)
  local names, seen = {}, {}
  for r = row, first, -1 do
    local text = lines[r - first + 1] or ''
    if r == row then
      text = text:sub(1, col):gsub('[%w_$]+$', '')
    end
    local found = {}
    for start, word in text:gmatch('()([%a_$][%w_$]*)') do
      table.insert(found, { name = word, row = r, col = start - 1 })
    end
    for i = #found, 1, -1 do
      local f = found[i]
      if #f.name >= 3 and not seen[f.name] and #names < M.NAMES then
        seen[f.name] = true
        table.insert(names, f)
      end
    end
  end
  return names
end

--- The other clients attached to `buf` that answer textDocument/definition.
local function providers(buf, own)
  local found = {}
  for _, client in ipairs(compat.buf_clients(buf)) do
    local caps = client.server_capabilities or {}
    if client.id ~= own.id and client.name ~= 'fimlsp' and caps.definitionProvider
        and not compat.is_stopped(client) then
      table.insert(found, client)
    end
  end
  return found
end

--- Up to M.LINES lines of `uri` from 0-based `line`: from its buffer if one is loaded (what the
--- user sees, unsaved changes included), else from the file; nil if it cannot be read.
function M.read(uri, line)
  if type(uri) ~= 'string' or not uri:match('^file:') or type(line) ~= 'number' or line < 0 then
    return nil
  end
  local fname = vim.uri_to_fname(uri)
  local b = vim.fn.bufnr(fname)
  if b ~= -1 and api.nvim_buf_is_loaded(b) then
    local lines = api.nvim_buf_get_lines(b, line, line + M.LINES, false)
    return #lines > 0 and table.concat(lines, '\n'):sub(1, M.MAX_CHARS) or nil
  end
  local stat = compat.uv.fs_stat(fname)
  if not stat or stat.type ~= 'file' or stat.size > M.MAX_FILE_BYTES then
    return nil
  end
  local handle = io.open(fname, 'r')
  if not handle then
    return nil -- not readable by the user: never sent
  end
  local out, number = {}, 0
  for text in handle:lines() do
    if number >= line then
      table.insert(out, text)
      if #out >= M.LINES then
        break
      end
    end
    number = number + 1
  end
  handle:close()
  return #out > 0 and table.concat(out, '\n'):sub(1, M.MAX_CHARS) or nil
end

--- The first location of a definition answer: (uri, 0-based line) or nil.
local function first_location(result)
  if type(result) ~= 'table' then
    return nil
  end
  local first = (result.uri or result.targetUri) and result or result[1]
  if type(first) ~= 'table' then
    return nil
  end
  local uri = first.targetUri or first.uri
  local range = first.targetRange or first.range
  local start = type(range) == 'table' and range.start
  if type(uri) ~= 'string' or type(start) ~= 'table' then
    return nil
  end
  return uri, start.line
end

--- Cancels the lookups of `buf` still waiting for an answer.
local function cancel(st)
  for _, request in ipairs(st.pending or {}) do
    if not request.done and request.id then
      pcall(compat.cancel_request, request.client, request.id)
    end
  end
  st.pending = {}
  if st.timer then
    st.timer:stop()
    st.timer:close()
    st.timer = nil
  end
end

--- Looks up the identifiers near the cursor of the current window (which shows `buf`) if they
--- changed since the last lookup; sends what the other servers answer to fimlsp. Returns true if
--- a lookup started.
function M.update(buf)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local own = opts.client_for and opts.client_for(buf)
  if not own or api.nvim_get_current_buf() ~= buf then
    return false
  end
  local pos = api.nvim_win_get_cursor(0)
  local names = M.names_near(buf, pos[1] - 1, pos[2])
  local st = states[buf] or { seq = 0, pending = {} }
  states[buf] = st
  local parts = {}
  for _, n in ipairs(names) do
    table.insert(parts, n.name)
  end
  local key = table.concat(parts, ' ')
  if key == st.key then
    return false
  end
  local clients = providers(buf, own)
  if #clients == 0 then
    return false -- no one to ask; looked up again once a language server attaches
  end
  st.key = key
  cancel(st)
  st.seq = st.seq + 1
  local seq = st.seq
  local uri = vim.uri_from_bufnr(buf)
  local found = {} -- index in `names` -> definition
  local waiting = 0
  local finished = false
  M.counters.lookups = M.counters.lookups + 1

  local function finish()
    if finished or st.seq ~= seq then
      return
    end
    finished = true
    cancel(st)
    local definitions = {}
    for i = 1, #names do
      if found[i] then
        table.insert(definitions, found[i])
      end
    end
    local client = opts.client_for(buf)
    if client then
      M.counters.sent = M.counters.sent + 1
      opts.execute(client, 'fimlsp.context', { uri, definitions }, function() end)
    end
  end

  for i, n in ipairs(names) do
    local line = api.nvim_buf_get_lines(buf, n.row, n.row + 1, false)[1] or ''
    for _, client in ipairs(clients) do
      local params = { textDocument = { uri = uri },
                       position = { line = n.row,
                                    character = compat.char_col(line, n.col,
                                                                client.offset_encoding) } }
      local request = { client = client }
      local ok, id = compat.request(client, 'textDocument/definition', params,
        function(err, result)
          request.done = true
          if st.seq ~= seq or finished then
            return
          end
          waiting = waiting - 1
          local target, start = first_location(not err and result or nil)
          if target and target ~= uri and not found[i] then
            local text = M.read(target, start)
            if text and text:match('%S') then
              found[i] = { uri = target, line = start, name = n.name, text = text }
            end
          end
          if waiting == 0 then
            finish()
          end
        end, buf)
      if ok and id then
        waiting = waiting + 1
        M.counters.requests = M.counters.requests + 1
        request.id = id
        table.insert(st.pending, request)
      end
    end
  end
  if waiting == 0 then
    finish()
    return true
  end
  local timer = compat.uv.new_timer()
  st.timer = timer
  timer:start(M.timeout_ms, 0, vim.schedule_wrap(function()
    if st.seq == seq and not finished then
      M.counters.timed_out = M.counters.timed_out + waiting
      finish()
    end
  end))
  return true
end

--- Forgets `buf` (unloaded, or the server stopped).
function M.detach(buf)
  local st = states[buf]
  if st then
    cancel(st)
    states[buf] = nil
  end
end

return M
