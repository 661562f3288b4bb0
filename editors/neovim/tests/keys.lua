-- Keys and line breaks, headless (tests/editors/test_neovim.py::test_keys_fall_back_and_crlf):
--   * with no suggestion showing, fimlsp's keys do what they did before fimlsp mapped them: a
--     global Lua <expr> mapping from before setup(), a buffer's own mapping, a global mapping made
--     after setup(), or the plain key;
--   * with one showing, <Tab> accepts it;
--   * a multi-line suggestion written with CRLF breaks (the server uses the document's) goes into
--     a 'fileformat=dos' buffer as lines, with no literal ^M.
-- Config: { plugin_dir, cmd, server, dir, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local cfg, results = H.cfg, H.results

local function line()
  return api.nvim_get_current_line()
end

local function open(name, lines, crlf)
  local path = cfg.dir .. '/' .. name
  vim.fn.writefile(crlf and vim.tbl_map(function(l) return l .. '\r' end, lines) or lines, path)
  vim.cmd('edit ' .. vim.fn.fnameescape(path))
  -- Attached, with fimlsp's keys mapped (on_attach runs once the server has initialized).
  return H.wait_until(function()
    for _, m in ipairs(api.nvim_buf_get_keymap(0, 'i')) do
      if m.desc == 'fimlsp: accept' then
        return true
      end
    end
  end, 30000, 'fimlsp keys in ' .. name)
end

--- Insert mode at the end of line `row` (1-based).
local function insert_at_end(row)
  vim.cmd('stopinsert')
  H.tick()
  api.nvim_win_set_cursor(0, { row, 0 })
  vim.cmd('startinsert!')
  H.wait_until(function()
    return api.nvim_get_mode().mode == 'i'
  end, 5000, 'insert mode')
end

H.run(function()
  -- A plugin (think nvim-cmp) owns <Tab> before fimlsp is set up.
  vim.keymap.set('i', '<Tab>', function()
    vim.g.global_tab = (vim.g.global_tab or 0) + 1
    return 'G'
  end, { expr = true })
  -- A buffer's own mapping, made before fimlsp attaches to it.
  api.nvim_create_autocmd('BufReadPost', { pattern = '*/own.py',
    command = 'inoremap <buffer> <Tab> BUF' })

  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = cfg.cmd, server = cfg.server, auto_trigger = false })
  local client_ok = open('global.py', { 'x = 1' })
  results.attached = client_ok and true or false
  if not client_ok then
    return
  end

  -- Global <expr> mapping from before setup().
  insert_at_end(1)
  results.visible_before = fimlsp.visible()
  H.type('<Tab>')
  results.global = { line = line(), count = vim.g.global_tab or 0 }

  -- A suggestion showing: <Tab> accepts it, the other mapping does not run.
  local client = fimlsp.client(0)
  local row, col = api.nvim_win_get_cursor(0)[1] - 1, #line()
  local ghost = require('fimlsp.ghost')
  results.shown = ghost.receive(api.nvim_get_current_buf(), client,
    { items = { { insertText = ' + 2' } } }, row, col)
  H.type('<Tab>')
  results.accepted = { line = line(), count = vim.g.global_tab or 0, visible = fimlsp.visible() }

  -- A global mapping made after setup() (on a fimlsp key: <C-]> dismisses).
  vim.keymap.set('i', '<C-]>', function()
    vim.g.late = (vim.g.late or 0) + 1
  end)
  H.type('<C-]>')
  results.late = vim.g.late or 0

  -- The buffer's own mapping.
  vim.cmd('stopinsert')
  open('own.py', { 'y = 1' })
  insert_at_end(1)
  H.type('<Tab>')
  results.own = { line = line(), count = vim.g.global_tab or 0 }

  -- No other mapping at all: the key itself.
  vim.keymap.del('i', '<Tab>')
  vim.cmd('stopinsert')
  open('plain.py', { 'z = 1' })
  insert_at_end(1)
  H.type('<Tab>')
  results.plain = { line = line() }

  -- CRLF: a three-line suggestion with \r\n breaks in a DOS-format buffer.
  vim.cmd('stopinsert')
  open('dos.py', { 'def f():', '    pass' }, true)
  results.fileformat = vim.bo.fileformat
  insert_at_end(1)
  local buf = api.nvim_get_current_buf()
  row, col = api.nvim_win_get_cursor(0)[1] - 1, #line()
  results.crlf_shown = ghost.receive(buf, fimlsp.client(0), { items = { {
    insertText = '\r\n    x = 1\r\n    return x',
    range = { start = { line = row, character = col }, ['end'] = { line = row, character = col } },
  } } }, row, col)
  results.crlf_suggestion = fimlsp.suggestion() and fimlsp.suggestion().text or vim.NIL
  results.crlf_accepted = fimlsp.accept()
  results.crlf_lines = api.nvim_buf_get_lines(buf, 0, -1, true)
  results.crlf_cursor = api.nvim_win_get_cursor(0)
  vim.cmd('stopinsert')
  vim.cmd('write')
  results.crlf_file = table.concat(vim.fn.readfile(cfg.dir .. '/dos.py', 'b'), '\n')
end)
