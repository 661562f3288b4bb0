-- Next edits (tests/editors/test_neovim.py::test_next_edit): the plugin asks the real server
-- for textDocument/copilotInlineEdit after an edit and records the answer; then the preview,
-- jump, apply and the stale-version guard are exercised with a known edit (the random-weight
-- model's own rewrite is meaningless). Config: { plugin_dir, cmd, server, file, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local results = H.results
local api = vim.api

local function lines(buf)
  return table.concat(api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

local function marks(buf)
  local ns = api.nvim_get_namespaces()['fimlsp_nextedit']
  local out = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    local d = m[4]
    local virt = {}
    for _, chunks in ipairs(d.virt_lines or {}) do
      table.insert(virt, chunks[1][1])
    end
    table.insert(out, { row = m[2], col = m[3], end_row = d.end_row, end_col = d.end_col,
      hl = d.hl_group, virt_lines = virt })
  end
  return out
end

H.run(function()
  local fimlsp = require('fimlsp')
  local nextedit = require('fimlsp.nextedit')
  fimlsp.setup({ cmd = H.cfg.cmd, server = H.cfg.server, next_edit = { auto = false } })
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  local buf = api.nvim_get_current_buf()
  results.state = H.wait_until(function()
    return fimlsp.state == 'ready' and fimlsp.state
  end, 90000, 'model ready') or fimlsp.state

  -- A rename in the signature, then ask at its end.
  api.nvim_buf_set_text(buf, 1, 26, 1, 27, { 'height' })
  api.nvim_win_set_cursor(0, { 2, 32 })
  H.tick()
  nextedit.last = nil
  results.asked = fimlsp.next_edit()
  local answer = H.wait_until(function()
    return nextedit.last
  end, 90000, 'the next-edit answer')
  results.answer = answer or vim.NIL
  results.version = vim.lsp.util.buf_versions[buf]
  results.server_text = vim.NIL
  local client = fimlsp.client(buf)
  local got = client and require('fimlsp.compat').request_sync(client, 'workspace/executeCommand',
    { command = 'fimlsp.documentText', arguments = { vim.uri_from_bufnr(buf) } }, 10000, buf)
  if got and got.result then
    results.server_text = got.result
  end
  results.buffer = lines(buf)

  -- The UI with a known edit: line 3's `self.h = h` becomes `self.height = height`.
  nextedit.dismiss(buf)
  local version = vim.lsp.util.buf_versions[buf]
  local edit = { range = { start = { line = 3, character = 13 }, ['end'] = { line = 3, character = 18 } },
    text = 'height = height', textDocument = { uri = vim.uri_from_bufnr(buf), version = version } }
  results.shown = nextedit.show(buf, edit, version, 'utf-16')
  results.marks = marks(buf)
  api.nvim_win_set_cursor(0, { 1, 0 })
  results.jumped = nextedit.jump(buf)
  results.cursor = api.nvim_win_get_cursor(0)
  results.applied = nextedit.apply(buf)
  results.after_apply = lines(buf)
  results.marks_after_apply = marks(buf)

  -- Stale: the buffer changes after the edit was shown; the preview goes, apply refuses.
  version = vim.lsp.util.buf_versions[buf]
  edit.textDocument.version = version
  edit.range = { start = { line = 0, character = 6 }, ['end'] = { line = 0, character = 9 } }
  edit.text = 'Rect'
  nextedit.show(buf, edit, version, 'utf-16')
  api.nvim_buf_set_text(buf, 5, 0, 5, 0, { '# typed ' })
  vim.cmd('doautocmd TextChanged')
  results.marks_after_change = marks(buf)
  results.stale_applied = nextedit.apply(buf)
  results.final = lines(buf)
end)
