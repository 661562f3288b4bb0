-- The 0.12 path (lua/fimlsp/builtin.lua) in a real Neovim 0.12: Neovim's own
-- vim.lsp.inline_completion requests, draws and accepts; fimlsp's accept_word / accept_line take
-- the item through get{ on_accept }. Driven by tests/editors/test_neovim.py, in two modes:
--
--   * 'standin': the answers come from an in-process language server (vim.lsp.start with a
--     function as cmd) that answers every inlineCompletion with one fixed item, so the test knows
--     the text: a CRLF buffer with "\r\n"-broken suggestions (accept line, then accept all must
--     leave no literal ^M), and an item whose range starts one character before the cursor (the
--     character typed since the request), as Neovim 0.12 hands it over in a vim.Range.
--   * 'server': the real fimlsp server (tiny model: gibberish) in a CRLF buffer: the ghost text
--     shows, accept line inserts it without ^M, and the server counts the accept.
--
-- Config: { plugin_dir, mode, cmd?, server?, dir, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local cfg, results = H.cfg, H.results

local function open(name, lines)
  local path = cfg.dir .. '/' .. name
  vim.fn.writefile(vim.tbl_map(function(l) return l .. '\r' end, lines), path)
  vim.cmd('edit ' .. vim.fn.fnameescape(path))
  return api.nvim_get_current_buf()
end

--- Neovim's inline completion virtual text in `buf`, '' when none (its namespace's extmarks).
local function shown(buf)
  local ns = api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if not ns then
    return ''
  end
  local parts = {}
  for _, mark in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    for _, chunk in ipairs(mark[4].virt_text or {}) do
      table.insert(parts, chunk[1])
    end
    for _, line in ipairs(mark[4].virt_lines or {}) do
      for _, chunk in ipairs(line) do
        table.insert(parts, chunk[1])
      end
    end
  end
  return table.concat(parts)
end

--- Insert mode at the end of line `row` (1-based); Neovim asks for a suggestion there.
local function insert_at_end(row)
  vim.cmd('stopinsert')
  H.tick()
  api.nvim_win_set_cursor(0, { row, 0 })
  vim.cmd('startinsert!')
  H.wait_until(function()
    return api.nvim_get_mode().mode == 'i'
  end, 5000, 'insert mode')
end

--- Waits for the buffer to change after an accept (Neovim applies it on the next loop turn).
local function accepted(buf, tick)
  return H.wait_until(function()
    return api.nvim_buf_get_changedtick(buf) ~= tick
  end, 5000, 'the accept to apply')
end

local function standin()
  local commands = {}
  local answer -- function(params) -> the item, per scenario
  local next_id = 0
  local function server(dispatchers)
    return {
      request = function(method, params, callback)
        next_id = next_id + 1
        local result = nil
        if method == 'initialize' then
          result = { capabilities = { inlineCompletionProvider = true, textDocumentSync = 1,
            executeCommandProvider = { commands = { 'fimlsp.accept', 'fimlsp.partialAccept' } } } }
        elseif method == 'textDocument/inlineCompletion' then
          result = { items = { answer(params) } }
        elseif method == 'workspace/executeCommand' then
          table.insert(commands, { params.command, params.arguments })
        end
        vim.schedule(function()
          callback(nil, result)
        end)
        return true, next_id
      end,
      notify = function()
        return true
      end,
      is_closing = function()
        return false
      end,
      terminate = function() end,
    }
  end
  local fimlsp = require('fimlsp')
  fimlsp.setup({ enabled = false }) -- no fimlsp server: the stand-in answers
  results.ui = fimlsp.status().ui
  local function start(buf)
    local id = vim.lsp.start({ name = 'standin', cmd = server, root_dir = cfg.dir }, { bufnr = buf })
    vim.lsp.inline_completion.enable(true, { bufnr = buf })
    return id
  end

  -- 1. CRLF: accept the next line, then all of the rest.
  local buf = open('crlf.py', { 'def f():', '    pass' })
  results.fileformat = vim.bo[buf].fileformat
  start(buf)
  answer = function(params)
    local at = params.position
    return { insertText = '\r\n    x = 1\r\n    return x',
             range = { start = at, ['end'] = at },
             command = { title = 'accept', command = 'fimlsp.accept', arguments = { 7 } } }
  end
  insert_at_end(1)
  results.crlf_shown = H.wait_until(function()
    return shown(buf) ~= '' and shown(buf)
  end, 10000, 'the CRLF suggestion') or ''
  local tick = api.nvim_buf_get_changedtick(buf)
  results.line = fimlsp.accept_line()
  accepted(buf, tick)
  results.after_line = api.nvim_buf_get_lines(buf, 0, -1, true)
  -- Neovim asks again at the new cursor; the stand-in offers the same text: take it all.
  H.wait_until(function()
    return shown(buf) ~= ''
  end, 10000, 'the second CRLF suggestion')
  tick = api.nvim_buf_get_changedtick(buf)
  results.all = fimlsp.accept()
  accepted(buf, tick)
  results.after_all = api.nvim_buf_get_lines(buf, 0, -1, true)
  vim.cmd('stopinsert')
  H.tick()
  vim.cmd('write')
  results.file = table.concat(vim.fn.readfile(vim.fn.expand('%:p'), 'b'), '\n')

  -- 2. A range that starts one character before the cursor: 'b' was typed since the request.
  local buf2 = open('range.py', { 'x = ab)' })
  start(buf2)
  answer = function(params)
    local at = params.position
    return { insertText = 'b(c, d)',
             range = { start = { line = at.line, character = at.character - 1 }, ['end'] = at },
             command = { title = 'accept', command = 'fimlsp.accept', arguments = { 8 } } }
  end
  vim.cmd('stopinsert')
  H.tick()
  api.nvim_win_set_cursor(0, { 1, 6 }) -- after 'x = ab', before ')'
  vim.cmd('startinsert')
  H.wait_until(function()
    return shown(buf2) ~= ''
  end, 10000, 'the ranged suggestion')
  tick = api.nvim_buf_get_changedtick(buf2)
  results.word = fimlsp.accept_word()
  accepted(buf2, tick)
  results.after_word = api.nvim_buf_get_lines(buf2, 0, -1, true)
  H.wait_until(function()
    return #commands >= 3
  end, 5000, 'the commands')
  results.commands = commands
end

local function real_server()
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = cfg.cmd, server = cfg.server })
  results.ui = fimlsp.status().ui
  local buf = open('real.py', { 'def add(a, b):', '    return a + b', '', 'x = add(1, 2)' })
  results.fileformat = vim.bo[buf].fileformat
  H.wait_until(function()
    return fimlsp.client(buf) and fimlsp.state == 'ready'
  end, 90000, 'the model')
  insert_at_end(4)
  H.type(' + add')
  results.shown = H.wait_until(function()
    return shown(buf) ~= '' and shown(buf)
  end, 60000, 'a suggestion from the server') or ''
  local tick = api.nvim_buf_get_changedtick(buf)
  results.line = fimlsp.accept_line()
  accepted(buf, tick)
  results.after_line = api.nvim_buf_get_lines(buf, 0, -1, true)
  -- The accept command went before this request on the same pipe: one answer says; a few
  -- tries allow for a server that answers out of order.
  local client = fimlsp.client(buf)
  for _ = 1, 20 do
    local got
    client:request('workspace/executeCommand', { command = 'fimlsp.stats', arguments = {} },
      function(_, s) got = s or false end, buf)
    H.wait_until(function() return got ~= nil end, 5000, 'stats')
    results.stats = got
    if got and (got.accepted or 0) + (got.partially_accepted or 0) >= 1 then
      break
    end
  end
end

H.run(function()
  if cfg.mode == 'standin' then
    standin()
  else
    real_server()
  end
end)
