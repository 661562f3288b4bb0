-- Size limit, headless (tests/editors/test_neovim.py::test_buffers_over_the_servers_limit):
-- a buffer over the server's document limit (8,000,000 characters: the server keeps such a
-- document but never completes in it) is not attached, and the user is told once; a small one
-- opened before it is attached by the same client.
-- Config: { plugin_dir, cmd, server, small, big, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local cfg, results = H.cfg, H.results

H.run(function()
  local told = {}
  vim.notify = function(msg, level)
    table.insert(told, { msg, level })
  end
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = cfg.cmd, server = cfg.server })
  vim.cmd('edit ' .. vim.fn.fnameescape(cfg.small))
  local small = api.nvim_get_current_buf()
  results.small_attached = H.wait_until(function()
    return fimlsp.client(small) ~= nil
  end, 30000, 'attached to the small file') and true or false
  -- The client runs: attaching another buffer would be synchronous (vim.lsp.start reuses it).
  vim.cmd('edit ' .. vim.fn.fnameescape(cfg.big))
  local big = api.nvim_get_current_buf()
  results.big_chars = vim.fn.wordcount().chars
  results.big_attached = fimlsp.client(big) ~= nil
  results.attach_again = fimlsp.attach(big) ~= nil
  results.told = told
end)
