-- :FimlspEnable before setup() (tests/editors/test_neovim.py::test_enable_before_setup): the
-- plugin's commands are loaded (as a plugin manager would), setup() never called, `fimlsp` on
-- $PATH. :FimlspEnable must set fimlsp up with the defaults and attach; typing in insert mode
-- afterwards must not raise an error per keystroke. Config: { plugin_dir, file, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local results = H.results

H.run(function()
  vim.cmd('runtime! plugin/fimlsp.lua')
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  vim.v.errmsg = ''
  vim.cmd('FimlspEnable')
  local fimlsp = require('fimlsp')
  results.attached = H.wait_until(function()
    return fimlsp.status().attached
  end, 20000, 'attach') or false
  results.state = H.wait_until(function()
    return (fimlsp.state == 'ready' or fimlsp.state == 'failed') and fimlsp.state
  end, 30000, 'model ready') or fimlsp.state
  api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('startinsert!')
  H.wait_until(function()
    return api.nvim_get_mode().mode == 'i'
  end, 5000, 'insert mode')
  local before = fimlsp.status().counters.answered
  H.type('abc')
  results.line = api.nvim_get_current_line()
  results.answered = H.wait_until(function()
    local n = fimlsp.status().counters.answered
    return n > before and n
  end, 15000, 'an answer after typing') or 0
  results.status = fimlsp.status()
  results.status.counters = nil
  vim.cmd('FimlspStatus')
end)
