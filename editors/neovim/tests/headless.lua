-- Headless protocol test, driven by tests/editors/test_neovim.py:
--   FIMLSP_TEST_CONFIG=cfg.json nvim --headless -n -u NONE -i NONE -c 'luafile headless.lua'
-- cfg.json: { plugin_dir, cmd, server, file, line, result }. Runs every step as a coroutine that
-- yields to Neovim's main loop while waiting (insert-mode autocommands, typed keys and LSP
-- answers need it), each wait bounded; writes what it saw as JSON to `result` and quits. The
-- Python test makes the assertions.

local cfg = vim.fn.json_decode(table.concat(vim.fn.readfile(os.getenv('FIMLSP_TEST_CONFIG')), '\n'))
vim.opt.runtimepath:prepend(cfg.plugin_dir)
vim.o.swapfile = false

local api = vim.api
local uv = vim.uv or vim.loop
local v = vim.version()
local results = { steps = {}, version = ('%d.%d.%d'):format(v.major, v.minor, v.patch) }
local co

local function now_ms()
  return uv.hrtime() / 1e6
end

local function finish()
  pcall(vim.cmd, 'stopinsert')
  local ok, ghost = pcall(require, 'fimlsp.ghost')
  if ok then
    results.counters, results.last_error = ghost.counters, ghost.last_error
  end
  vim.fn.writefile({ vim.fn.json_encode(results) }, cfg.result)
  vim.cmd('qa!')
end

local function step(name, value)
  results.steps[#results.steps + 1] = name
  results[name] = value
end

--- Yields to the main loop until `cond()` is truthy; returns its value, or nil after `ms`.
local function wait_until(cond, ms, what)
  local deadline = now_ms() + ms
  while true do
    local ok, value = pcall(cond)
    if ok and value then
      return value
    end
    if now_ms() > deadline then
      results.timeouts = results.timeouts or {}
      table.insert(results.timeouts, what or '?')
      return nil
    end
    vim.defer_fn(function()
      local resumed, err = coroutine.resume(co)
      if not resumed then
        results.error = tostring(err)
        finish()
      end
    end, 20)
    coroutine.yield()
  end
end

local function buffer_text()
  return table.concat(api.nvim_buf_get_lines(0, 0, -1, true), '\n')
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return { pos[1] - 1, pos[2] }
end

--- What the plugin drew: the extmarks of its namespace, as text (virtual lines after '\n').
local function ghost_on_screen()
  local ns = api.nvim_get_namespaces().fimlsp
  local marks = api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
  local out = { count = #marks }
  for _, mark in ipairs(marks) do
    local d = mark[4]
    local parts = {}
    for _, chunk in ipairs(d.virt_text or {}) do
      parts[#parts + 1] = chunk[1]
    end
    local text = table.concat(parts)
    for _, vl in ipairs(d.virt_lines or {}) do
      local line = {}
      for _, chunk in ipairs(vl) do
        line[#line + 1] = chunk[1]
      end
      text = text .. '\n' .. table.concat(line)
    end
    out.text, out.row, out.col, out.pos = text, mark[2], mark[3], d.virt_text_pos
  end
  return out
end

local function snapshot()
  local fimlsp = require('fimlsp')
  local s = fimlsp.suggestion()
  return {
    buffer = buffer_text(),
    cursor = cursor(),
    suggestion = s and s.text or vim.NIL,
    ghost = ghost_on_screen(),
    counters = fimlsp.status().counters,
  }
end

local function server_stats()
  local stats
  require('fimlsp').stats(function(_, result)
    stats = result or { error = 'no answer' }
  end)
  return wait_until(function()
    return stats
  end, 5000, 'stats')
end

--- Makes sure a suggestion is showing, asking for one when none is; false if none comes.
local function shown()
  local fimlsp = require('fimlsp')
  if fimlsp.visible() then
    return true
  end
  local answered = fimlsp.status().counters.answered
  fimlsp.trigger()
  wait_until(function()
    return fimlsp.visible() or fimlsp.status().counters.answered > answered
  end, 15000, 'an answer')
  return fimlsp.visible()
end

local function answers()
  return require('fimlsp').status().counters.answered
end

local function main()
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = cfg.cmd, server = cfg.server, debounce_ms = 30 })
  vim.cmd('edit ' .. vim.fn.fnameescape(cfg.file))

  step('attached', wait_until(function()
    return fimlsp.status().attached
  end, 20000, 'attach') or false)
  step('ready', wait_until(function()
    return fimlsp.state == 'ready' or fimlsp.state == 'failed'
  end, 30000, 'model ready') and fimlsp.state)
  local client = fimlsp.client(0)
  results.offset_encoding = client and client.offset_encoding
  results.ui = fimlsp.status().ui
  if fimlsp.state ~= 'ready' then
    results.error = 'model not ready: ' .. tostring(fimlsp.state) .. ' ' .. tostring(fimlsp.error)
    return
  end
  -- :checkhealth names the server's version and how the model runs.
  results.server = fimlsp.server
  local source_buf = api.nvim_get_current_buf()
  vim.cmd('checkhealth fimlsp')
  results.health = table.concat(api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  vim.cmd('bwipeout!')
  api.nvim_set_current_buf(source_buf)

  -- Insert mode at the end of the given line: InsertEnter asks for a suggestion by itself.
  api.nvim_win_set_cursor(0, { cfg.line + 1, 0 })
  local before = fimlsp.status().counters
  vim.cmd('startinsert!')
  wait_until(function()
    return api.nvim_get_mode().mode == 'i'
  end, 5000, 'insert mode')
  wait_until(function()
    return answers() > before.answered
  end, 15000, 'an answer to InsertEnter')
  step('auto', { requests = fimlsp.status().counters.requests - before.requests,
                 answered = answers() - before.answered })

  -- Typing: debounced, so one request for a burst of keys, not one per key.
  before = fimlsp.status().counters
  api.nvim_feedkeys(cfg.typed, 'nt', false)
  wait_until(function()
    return vim.endswith(api.nvim_get_current_line(), cfg.typed) and answers() > before.answered
  end, 15000, 'an answer after typing')
  step('typing', { line = api.nvim_get_current_line(),
                   requests = fimlsp.status().counters.requests - before.requests,
                   answered = answers() - before.answered })

  -- Each accept below starts from here: the buffer as typed, the cursor at the end.
  local base = api.nvim_buf_get_lines(0, 0, -1, true)
  local function restore()
    api.nvim_buf_set_lines(0, 0, -1, true, base)
    api.nvim_win_set_cursor(0, { cfg.line + 1, #base[cfg.line + 1] })
    local yielded = false
    wait_until(function() -- one trip through the main loop: insert mode sees the change
      local was = yielded
      yielded = true
      return was
    end, 1000)
  end

  -- Manual trigger twice in a row: the first request is cancelled ($/cancelRequest).
  fimlsp.dismiss()
  local c0 = fimlsp.status().counters
  fimlsp.trigger()
  fimlsp.trigger()
  wait_until(function()
    return fimlsp.visible() or answers() > c0.answered
  end, 15000, 'an answer to the trigger')
  local snap = snapshot()
  snap.item = fimlsp.suggestion() and fimlsp.suggestion().item or vim.NIL
  snap.cancelled = snap.counters.cancelled - c0.cancelled
  step('triggered', snap)

  -- Accept a word, a line, everything; then a word twice (what is left stays on screen).
  local ghost_mod = require('fimlsp.ghost')
  for _, name in ipairs({ 'accept_word', 'accept_line', 'accept', 'accept_word_twice' }) do
    restore()
    local ok_shown = shown()
    local steps = {}
    for i = 1, (name == 'accept_word_twice' and 2 or 1) do
      local pre = snapshot()
      local how = name:match('^accept_(%a+)') or 'all'
      local did = ok_shown and fimlsp[how == 'all' and 'accept' or ('accept_' .. how)]()
      local piece = vim.NIL
      if ok_shown then
        piece = how == 'word' and ghost_mod.next_word(pre.suggestion)
          or how == 'line' and ghost_mod.next_line(pre.suggestion) or pre.suggestion
      end
      steps[i] = { how = how, ok = did, before = pre, after = snapshot(), piece = piece }
      ok_shown = ok_shown and fimlsp.visible()
    end
    step(name, { shown = steps[1].before.suggestion ~= vim.NIL, steps = steps })
  end

  -- Dismiss.
  restore()
  local ok_shown = shown()
  local dismissed = fimlsp.dismiss()
  step('dismiss', { shown = ok_shown, ok = dismissed, after = snapshot() })

  step('stats', server_stats())
end

co = coroutine.create(function()
  local ok, err = pcall(main)
  if not ok then
    results.error = tostring(err)
  end
  finish()
end)
local ok, err = coroutine.resume(co)
if not ok then
  results.error = tostring(err)
  finish()
end
