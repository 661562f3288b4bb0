-- Differences between the Neovim versions the plugin supports (0.7 to 0.12), in one place.
--
-- 0.7 has no vim.lsp.start and calls client methods with a dot (client.request(...));
-- 0.11 made them methods (client:request(...)) and changed vim.str_byteindex's signature.

local M = {}

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

M.has = has
M.methods = has('0.11') -- client:request(...) rather than client.request(...)
M.inline_virt_text = has('0.10') -- extmarks with virt_text_pos = 'inline'
M.uv = vim.uv or vim.loop

--- Calls a method of an LSP client object the way this Neovim wants it.
local function call(client, name, ...)
  if M.methods then
    return client[name](client, ...)
  end
  return client[name](...)
end

--- Sends a request; returns (ok, request_id) like client.request does.
function M.request(client, method, params, handler, bufnr)
  return call(client, 'request', method, params, handler, bufnr)
end

--- Sends a request and waits up to `timeout_ms`; returns (result, err) like client.request_sync.
function M.request_sync(client, method, params, timeout_ms, bufnr)
  return call(client, 'request_sync', method, params, timeout_ms, bufnr)
end

function M.notify(client, method, params)
  return call(client, 'notify', method, params)
end

function M.cancel_request(client, id)
  return call(client, 'cancel_request', id)
end

function M.stop(client, force)
  return call(client, 'stop', force)
end

function M.is_stopped(client)
  return call(client, 'is_stopped')
end

function M.get_client(id)
  if not id then
    return nil
  end
  local client = vim.lsp.get_client_by_id(id)
  if client and not M.is_stopped(client) then
    return client
  end
  return nil
end

--- Starts (or reuses) the one fimlsp client and attaches it to `bufnr`; returns its id.
--- One server serves every buffer and root: it holds the model, which is the expensive part.
function M.start(config, bufnr, known_id)
  if vim.lsp.start then -- 0.8+
    return vim.lsp.start(config, {
      bufnr = bufnr,
      reuse_client = function(client, conf)
        return client.name == conf.name and not M.is_stopped(client)
      end,
    })
  end
  local id = M.get_client(known_id) and known_id or vim.lsp.start_client(config)
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

--- Byte column of LSP position `character` (in `encoding` units) within `line`.
function M.byte_col(line, character, encoding)
  if character <= 0 then
    return 0
  end
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local ok, col
  if has('0.11') then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == 'utf-16')
  end
  return ok and col or #line
end

--- LSP position `character` (in `encoding` units) of byte column `col` within `line`.
function M.char_col(line, col, encoding)
  col = math.min(col, #line)
  if col <= 0 or encoding == 'utf-8' then
    return math.max(col, 0)
  end
  local ok, units
  if has('0.11') then
    ok, units = pcall(vim.str_utfindex, line, encoding, col, false)
  else
    local utf32, utf16
    ok, utf32, utf16 = pcall(vim.str_utfindex, line, col)
    units = encoding == 'utf-32' and utf32 or utf16
  end
  return ok and units or col
end

--- The LSP clients attached to `bufnr` (a list).
function M.buf_clients(bufnr)
  if vim.lsp.get_clients then -- 0.10+
    return vim.lsp.get_clients({ bufnr = bufnr })
  end
  if has('0.8') then
    return vim.lsp.get_active_clients({ bufnr = bufnr })
  end
  local found = {}
  for _, client in pairs(vim.lsp.buf_get_clients(bufnr)) do
    table.insert(found, client)
  end
  return found
end

--- Runs the User autocommand `pattern` if anyone listens.
function M.user_event(pattern, data)
  if vim.api.nvim_exec_autocmds then -- 0.7+; `data` only from 0.8
    local opts = { pattern = pattern, modeline = false }
    if has('0.8') then
      opts.data = data
    end
    pcall(vim.api.nvim_exec_autocmds, 'User', opts)
  else
    pcall(vim.cmd, 'doautocmd <nomodeline> User ' .. pattern)
  end
end

return M
