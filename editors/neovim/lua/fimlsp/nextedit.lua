-- Next-edit suggestions: the server's textDocument/copilotInlineEdit, shown as a diff preview.
--
-- The edit's old text is highlighted (FimlspNextEditDelete) and its new text shown below it as
-- virtual lines (FimlspNextEditAdd), with extmarks, so nothing in the buffer changes until it is
-- applied. Asked for explicitly (M.request, :FimlspNextEdit) or when the cursor rests in normal
-- mode (CursorHold) after the buffer changed. An edit is for one buffer version: it is dropped
-- as soon as the buffer changes, and applying checks the version again, so a stale edit never
-- touches the text.

local compat = require('fimlsp.compat')

local api = vim.api
local M = {}

local ns = api.nvim_create_namespace('fimlsp_nextedit')
local shown = {} -- bufnr -> { edit = the LSP edit, version = buffer version, encoding }
local pending = {} -- bufnr -> request id in flight
local ctx = nil -- { client_for = function(buf), execute = function(...) }

function M.configure(context)
  ctx = context
end

local function buf_or_current(buf)
  return (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
end

local function version_of(buf)
  return vim.lsp.util.buf_versions[buf]
end

--- Clears the preview (and forgets the edit) in `buf`.
function M.dismiss(buf)
  buf = buf_or_current(buf)
  local had = shown[buf] ~= nil
  shown[buf] = nil
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
  return had
end

--- The edit on show in `buf`: { edit, version, encoding } or nil.
function M.current(buf)
  return shown[buf_or_current(buf)]
end

local function byte_pos(buf, position, encoding)
  local line = api.nvim_buf_get_lines(buf, position.line, position.line + 1, false)[1] or ''
  return position.line, compat.byte_col(line, position.character, encoding)
end

--- Draws `edit` (an LSP InlineEdit: range, text) in `buf` as a diff preview.
function M.show(buf, edit, version, encoding)
  M.dismiss(buf)
  local count = api.nvim_buf_line_count(buf)
  if edit.range.start.line >= count then
    return false
  end
  local srow, scol = byte_pos(buf, edit.range.start, encoding)
  local erow, ecol = byte_pos(buf, edit.range['end'], encoding)
  erow = math.min(erow, count - 1)
  if srow ~= erow or scol ~= ecol then
    api.nvim_buf_set_extmark(buf, ns, srow, scol, {
      end_row = erow, end_col = ecol, hl_group = 'FimlspNextEditDelete', strict = false })
  end
  -- The new version of the lines the edit touches, below the last of them.
  local first = api.nvim_buf_get_lines(buf, srow, srow + 1, false)[1] or ''
  local last = api.nvim_buf_get_lines(buf, erow, erow + 1, false)[1] or ''
  local text = first:sub(1, scol) .. (edit.text or edit.newText or '') .. last:sub(ecol + 1)
  local virt = {}
  for _, line in ipairs(vim.split(text, '\n', { plain = true })) do
    table.insert(virt, { { line:gsub('\r$', ''):gsub('\t', string.rep(' ', vim.bo[buf].tabstop)),
      'FimlspNextEditAdd' } })
  end
  api.nvim_buf_set_extmark(buf, ns, erow, 0, { virt_lines = virt, strict = false })
  shown[buf] = { edit = edit, version = version, encoding = encoding }
  compat.user_event('FimlspNextEditShown', { buf = buf })
  return true
end

--- Asks the server for the next edit at the cursor of `buf` (the current window's).
function M.request(buf)
  buf = buf_or_current(buf)
  local client = ctx and ctx.client_for(buf)
  if not client then
    return false
  end
  local version = version_of(buf)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.textDocument.version = version
  if pending[buf] then
    compat.cancel_request(client, pending[buf])
  end
  local encoding = client.offset_encoding or 'utf-16'
  local ok, id = compat.request(client, 'textDocument/copilotInlineEdit', params,
    function(err, result)
      pending[buf] = nil
      if err or not result or not api.nvim_buf_is_valid(buf) then
        return
      end
      M.last = result
      local edit = (result.edits or {})[1]
      -- The answer is for the version asked about; a buffer that moved on gets nothing shown.
      if edit and version_of(buf) == version and edit.textDocument.version == version then
        M.show(buf, edit, version, encoding)
      end
      compat.user_event('FimlspNextEditAnswered', { buf = buf })
    end, buf)
  if ok then
    pending[buf] = id
  end
  return ok
end

--- Moves the cursor to the start of the edit on show; false when there is none or it is there.
function M.jump(buf)
  buf = buf_or_current(buf)
  local s = shown[buf]
  if not s then
    return false
  end
  local row, col = byte_pos(buf, s.edit.range.start, s.encoding)
  local cursor = api.nvim_win_get_cursor(0)
  if cursor[1] == row + 1 and cursor[2] == col then
    return false
  end
  api.nvim_win_set_cursor(0, { row + 1, col })
  return true
end

--- Applies the edit on show, if the buffer is still at the version it was made for.
function M.apply(buf)
  buf = buf_or_current(buf)
  local s = shown[buf]
  if not s then
    return false
  end
  M.dismiss(buf)
  if version_of(buf) ~= s.version then
    return false -- the buffer changed since: the edit's positions mean nothing now
  end
  vim.lsp.util.apply_text_edits({ { range = s.edit.range, newText = s.edit.text } }, buf,
    s.encoding)
  local command = s.edit.command
  if command and ctx then
    ctx.execute(ctx.client_for(buf), command.command, command.arguments, function() end)
  end
  return true
end

--- Buffer-local autocommands: drop the preview on any change; ask when the cursor rests.
function M.attach(buf, auto)
  local group = api.nvim_create_augroup('fimlsp_nextedit_' .. buf, { clear = true })
  local changed = false
  api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI' }, { group = group, buffer = buf,
    callback = function()
      changed = true
      if shown[buf] and version_of(buf) ~= shown[buf].version then
        M.dismiss(buf)
      end
    end })
  if auto then
    api.nvim_create_autocmd('CursorHold', { group = group, buffer = buf, callback = function()
      if changed and not shown[buf] then
        changed = false
        M.request(buf)
      end
    end })
  end
  api.nvim_create_autocmd('BufUnload', { group = group, buffer = buf, callback = function()
    shown[buf], pending[buf] = nil, nil
  end })
end

function M.define_highlight()
  vim.cmd('highlight default link FimlspNextEditDelete DiffDelete')
  vim.cmd('highlight default link FimlspNextEditAdd DiffAdd')
end

return M
