-- :checkhealth fimlsp
local M = {}

local health = vim.health or require('health')
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local fail = health.error or health.report_error
local info = health.info or health.report_info

function M.check()
  local fimlsp = require('fimlsp')
  local builtin = require('fimlsp.builtin')
  start('fimlsp')
  local v = vim.version and vim.version() or {}
  info(('Neovim %s.%s.%s, fimlsp.nvim %s'):format(v.major or '?', v.minor or '?', v.patch or '?',
    fimlsp.version))
  if vim.fn.has('nvim-0.7') ~= 1 then
    fail('Neovim 0.7 or newer is needed')
  end
  local s = fimlsp.status()
  info('suggestions drawn with ' .. s.ui .. (builtin.available() and ' (0.12+)' or ''))
  local cmd = fimlsp.config.cmd
  cmd = type(cmd) == 'string' and vim.split(cmd, '%s+', { trimempty = true }) or cmd
  if type(cmd) ~= 'table' or not cmd[1] then
    fail('config.cmd is not a command')
  elseif vim.fn.executable(cmd[1]) == 1 then
    ok(('server command: %s'):format(table.concat(cmd, ' ')))
  else
    fail(('%s is not executable; install the server (`pipx install .` in a checkout of fimlsp, '
      .. 'see its README) or set cmd'):format(cmd[1]))
  end
  local server = fimlsp.server
  if server then
    info(('server: fimlsp %s; model %s on %s (%s, quantization %s)'):format(
      tostring(server.version), tostring(server.model), tostring(server.device),
      tostring(server.dtype), tostring(server.quantization)))
  end
  local stats = fimlsp.stats_sync(2000)
  if stats then
    info('server: ' .. fimlsp.describe_server(stats))
  elseif type(cmd) == 'table' and vim.fn.executable(cmd[1] or '') == 1 then
    -- Not running: ask the command itself (the part before `serve`) for its version.
    local version_cmd = {}
    for _, word in ipairs(cmd) do
      if word == 'serve' then
        break
      end
      table.insert(version_cmd, word)
    end
    table.insert(version_cmd, '--version')
    local out = vim.fn.system(version_cmd)
    if vim.v.shell_error == 0 then
      info('server: ' .. vim.trim(out) .. ' (not running)')
    else
      warn(('`%s` failed: %s'):format(table.concat(version_cmd, ' '), vim.trim(out)))
    end
  end
  if s.state == 'ready' then
    ok('model loaded')
  elseif s.state == 'failed' then
    fail('model failed to load: ' .. tostring(s.error))
  elseif s.state == 'stopped' then
    warn('server not running (it starts with the first file buffer; setup() called?)')
  else
    info('model: ' .. s.state)
  end
end

return M
