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

--- Where the item starts (0-based row, byte column): Neovim 0.12's vim.Range has start_row /
--- start_col; its pre-releases had start = { row, col }.
local function item_start(item)
  local range = item.range
  if type(range) ~= 'table' then
    return nil
  end
  if type(range.start_row) == 'number' then
    return range.start_row, range.start_col
  end
  if type(range.start) == 'table' then
    return range.start.row, range.start.col
  end
  return nil
end

--- The item's text with \n breaks (buffer lines hold none; Neovim's own accept would leave a
--- literal ^M at the end of each line of a CRLF file), and the characters the server's text has
--- more per break (for fimlsp.partialAccept, which counts in the server's text).
local function text_of(item)
  local text = item.insert_text
  if type(text) == 'table' then
    text = text.value
  end
  if type(text) ~= 'string' then
    return nil, 0
  end
  return ghost.plain_breaks(text)
end

local function partial(buf, item, how, execute)
  local text, break_extra = text_of(item)
  if not text or text == '' or api.nvim_get_current_buf() ~= buf then
    return
  end
  local pos = api.nvim_win_get_cursor(0)
  local row, col = pos[1] - 1, pos[2]
  local typed = ''
  local start_row, start_col = item_start(item)
  if start_row == row and start_col <= col then
    typed = api.nvim_get_current_line():sub(start_col + 1, col)
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
      local taken = typed .. piece
      local _, breaks = taken:gsub('\n', '')
      execute(client, 'fimlsp.partialAccept',
              { args[1], vim.fn.strchars(taken) + breaks * break_extra })
    end
  end
end

--- 'all', 'word' or 'line'; false when nothing is showing.
function M.accept(buf, how, execute)
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  local ic = vim.lsp.inline_completion
  if how == 'all' then
    -- Neovim inserts the item (and runs its command) itself; only its line breaks are ours.
    return ic.get({ bufnr = buf, on_accept = function(item)
      local text = text_of(item)
      if text and type(item.insert_text) == 'string' then
        item.insert_text = text
      end
      return item
    end })
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
