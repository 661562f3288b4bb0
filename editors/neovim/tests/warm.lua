-- Warm starts (tests/editors/test_neovim.py::test_warm_start_on_ready_and_cursor_hold): once
-- the model is ready the plugin asks the server to prefill the prompt at the cursor, again when
-- the cursor rests (CursorHold); the first keystroke there then reuses the prefilled cache.
-- Config: { plugin_dir, cmd, server, file, line, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local results = H.results

local function stats()
  local got
  require('fimlsp').stats(function(_, result)
    got = result
  end)
  return H.wait_until(function()
    return got
  end, 10000, 'fimlsp.stats')
end

local function warmed_at_least(n, what)
  return H.wait_until(function()
    local s = stats()
    return s and s.warmed >= n and s
  end, 60000, what)
end

H.run(function()
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = H.cfg.cmd, server = H.cfg.server })
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  vim.api.nvim_win_set_cursor(0, { H.cfg.line, 0 })
  results.state = H.wait_until(function()
    return fimlsp.state == 'ready' and fimlsp.state
  end, 60000, 'model ready') or fimlsp.state
  results.on_ready = (warmed_at_least(1, 'warm start when ready') or {}).warmed or 0

  vim.api.nvim_win_set_cursor(0, { H.cfg.line + 40, 0 })
  vim.cmd('doautocmd CursorHold')
  results.on_hold = (warmed_at_least(2, 'warm start on CursorHold') or {}).warmed or 0

  -- The first keystroke at the warmed cursor (insert before its first column: the same place).
  local before = stats().requests
  H.type('ix')
  local after = H.wait_until(function()
    local s = stats()
    return s and s.requests > before and s.source == 'model' and s
  end, 60000, 'the first suggestion')
  results.first = after or vim.NIL
end)
