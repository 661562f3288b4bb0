-- Neovim 0.12+: inline completion drawn by vim.lsp.inline_completion itself.
--
-- Neovim requests (debounced, on InsertEnter/CursorMovedI), draws and accepts; accepting runs the
-- item's command (fimlsp.accept). Accept-word / accept-line go through get{ on_accept = ... },
-- which hands us the item instead of inserting it, and report fimlsp.partialAccept.

local ghost = require('fimlsp.ghost')

local api = vim.api
local M = {}

function M.available()
  local ic = vim.lsp.inline_completion
  return type(ic) == 'table' and type(ic.enable) == 'function' and type(ic.get) == 'function'
end

function M.enable(buf, client_id, on)
  return pcall(vim.lsp.inline_completion.enable, on ~= false, { bufnr = buf, client_id = client_id })
end

local function partial(buf, item, how, execute)
  local text = item.insert_text
  if type(text) == 'table' then
    text = text.value
  end
  if type(text) ~= 'string' or text == '' or api.nvim_get_current_buf() ~= buf then
    return
  end
  local pos = api.nvim_win_get_cursor(0)
  local row, col = pos[1] - 1, pos[2]
  local typed = ''
  local start = item.range and item.range.start
  if start and start.row == row and start.col <= col then
    typed = api.nvim_get_current_line():sub(start.col + 1, col)
    if text:sub(1, #typed) ~= typed then
      typed = ''
    end
  end
  local rest = text:sub(#typed + 1)
  local piece = (how == 'word' and ghost.next_word(rest) or ghost.next_line(rest))
  if not piece or piece == '' then
    piece = rest
  end
  ghost.insert(buf, piece, 0)
  local client = vim.lsp.get_client_by_id(item.client_id)
  local command = item.command
  if client and command and command.command == 'fimlsp.accept' then
    if #piece == #rest then
      execute(client, command.command, command.arguments)
    else
      local args = command.arguments or {}
      execute(client, 'fimlsp.partialAccept', { args[1], vim.fn.strchars(typed .. piece) })
    end
  end
end

--- 'all', 'word' or 'line'; false when nothing is showing.
function M.accept(buf, how, execute)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local ic = vim.lsp.inline_completion
  if how == 'all' then
    return ic.get({ bufnr = buf })
  end
  return ic.get({ bufnr = buf, on_accept = function(item)
    partial(buf, item, how, execute)
  end })
end

--- Cycles the items Neovim's last request got (`step` 1 or -1); false when it cannot.
function M.select(buf, step)
  local ic = vim.lsp.inline_completion
  if type(ic.select) ~= 'function' then
    return false
  end
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  return pcall(ic.select, { bufnr = buf, count = step })
end

function M.dismiss(buf)
  return vim.lsp.inline_completion.get({ bufnr = buf, on_accept = function() end })
end

return M
