-- The 0.12 path (lua/fimlsp/builtin.lua) against a stand-in for vim.lsp.inline_completion with
-- the API of Neovim 0.12 (enable, get{ bufnr, on_accept }; items with insert_text, range of
-- 0-based rows/byte columns, command), since no 0.12 can be installed here. Driven by
-- tests/editors/test_neovim.py; writes JSON to $FIMLSP_TEST_RESULT.
local api = vim.api
vim.opt.runtimepath:prepend(os.getenv('FIMLSP_PLUGIN_DIR'))
local calls = {}
local current -- the item "showing"
vim.lsp.inline_completion = {
  enable = function(on, filter)
    table.insert(calls, { 'enable', on, filter })
  end,
  get = function(opts)
    table.insert(calls, { 'get', opts.on_accept ~= nil })
    if not current then
      return false
    end
    local item = current
    current = nil
    if opts.on_accept then
      -- Like Neovim 0.12: an item returned by on_accept is inserted (and its command run).
      local returned = opts.on_accept(item)
      if returned then
        table.insert(calls, { 'default accept', returned.insert_text })
      end
    else
      table.insert(calls, { 'default accept', item.insert_text })
    end
    return true
  end,
}
local fimlsp = require('fimlsp')
fimlsp.setup({ enabled = false }) -- no server: only the UI path
local results = { ui = fimlsp.status().ui }
api.nvim_buf_set_lines(0, 0, -1, true, { 'x = ab)' })
local function show(text)
  -- Like Neovim 0.12: the item's range starts where the request was made (after 'x = a'), and
  -- the text typed since is the start of insert_text.
  current = { insert_text = text, client_id = 1, command = { command = 'fimlsp.accept' },
              range = { start = { row = 0, col = 5 }, end_ = { row = 0, col = 5 } } }
end
api.nvim_win_set_cursor(0, { 1, 6 }) -- after 'x = ab', before ')': 'b' was typed since the request
show('b(c, d)\nnext line')
results.word = fimlsp.accept_word()
results.after_word = api.nvim_buf_get_lines(0, 0, -1, true)
results.cursor_word = api.nvim_win_get_cursor(0)
show('b(c, d)\nnext line')
results.line = fimlsp.accept_line()
results.after_line = api.nvim_buf_get_lines(0, 0, -1, true)
show('zzz')
results.all = fimlsp.accept()
show('zzz')
results.dismiss = fimlsp.dismiss()
results.after_dismiss = api.nvim_buf_get_lines(0, 0, -1, true)
results.nothing = fimlsp.accept()
results.calls = calls
vim.fn.writefile({ vim.fn.json_encode(results) }, os.getenv('FIMLSP_TEST_RESULT'))
vim.cmd('qa!')
