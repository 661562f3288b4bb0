-- Alternatives (tests/editors/test_neovim.py::test_cycle_alternatives_and_accept_one): after a
-- suggestion shows, <M-]> asks the server again at the cursor and shows the next item of its
-- answer (the server's alternatives, computed after the first), <M-]> / <M-[> then cycle that
-- list, and <Tab> accepts the one showing.
-- Config: { plugin_dir, cmd, server, file, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
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

local function showing(fimlsp)
  local s = fimlsp.suggestion()
  return s and { text = s.text, index = s.index, count = s.count } or vim.NIL
end

H.run(function()
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = H.cfg.cmd, server = H.cfg.server, auto_trigger = false })
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  results.state = H.wait_until(function()
    return fimlsp.state == 'ready' and fimlsp.state
  end, 60000, 'model ready') or fimlsp.state
  api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('startinsert!')
  H.wait_until(function()
    return api.nvim_get_mode().mode == 'i'
  end, 5000, 'insert mode')
  results.before = api.nvim_buf_get_lines(0, 0, -1, true)
  fimlsp.trigger()
  results.first = H.wait_until(function()
    return fimlsp.suggestion() and showing(fimlsp)
  end, 60000, 'the first suggestion') or vim.NIL
  H.type('<M-]>')
  results.second = H.wait_until(function()
    local s = fimlsp.suggestion()
    return s and s.index == 2 and showing(fimlsp)
  end, 60000, 'the second item after <M-]>') or showing(fimlsp)
  local requests = require('fimlsp.ghost').counters.requests
  H.type('<M-]>')
  results.third = showing(fimlsp)
  H.type('<M-[>')
  results.back = showing(fimlsp)
  results.requests_cycling = require('fimlsp.ghost').counters.requests - requests
  H.type('<Tab>')
  results.after = api.nvim_buf_get_lines(0, 0, -1, true)
  results.stats = H.wait_until(function()
    local s = stats()
    return s and s.accepted >= 1 and s
  end, 10000, 'the accept counted') or vim.NIL
end)
