-- Shared by the headless test scripts run by tests/editors/test_neovim.py: reads the JSON config
-- named by FIMLSP_TEST_CONFIG, runs `main` as a coroutine that may wait (yielding to Neovim's
-- main loop, every wait bounded), then writes `results` as JSON to config.result and quits.
local H = {}

local uv = vim.uv or vim.loop
local api = vim.api

H.cfg = vim.fn.json_decode(table.concat(vim.fn.readfile(os.getenv('FIMLSP_TEST_CONFIG')), '\n'))
local v = vim.version()
H.results = { version = ('%d.%d.%d'):format(v.major, v.minor, v.patch), timeouts = {} }
vim.opt.runtimepath:prepend(H.cfg.plugin_dir)
vim.o.swapfile = false

local co

local function now_ms()
  return uv.hrtime() / 1e6
end

function H.finish()
  pcall(vim.cmd, 'stopinsert')
  H.results.errmsg = vim.v.errmsg
  H.results.messages = vim.fn.execute('messages')
  vim.fn.writefile({ vim.fn.json_encode(H.results) }, H.cfg.result)
  vim.cmd('qa!')
end

--- Yields to the main loop until `cond()` is truthy; returns its value, or nil after `ms`.
function H.wait_until(cond, ms, what)
  local deadline = now_ms() + ms
  while true do
    local ok, value = pcall(cond)
    if ok and value then
      return value
    end
    if now_ms() > deadline then
      table.insert(H.results.timeouts, what or '?')
      return nil
    end
    vim.defer_fn(function()
      local resumed, err = coroutine.resume(co)
      if not resumed then
        H.results.error = tostring(err)
        H.finish()
      end
    end, 20)
    coroutine.yield()
  end
end

--- One trip through the main loop (typeahead fed with nvim_feedkeys is processed there).
function H.tick()
  local yielded = false
  H.wait_until(function()
    local was = yielded
    yielded = true
    return was
  end, 1000, 'a tick')
end

--- Types `keys` as if the user did (mappings apply) and lets Neovim process them.
function H.type(keys)
  api.nvim_feedkeys(api.nvim_replace_termcodes(keys, true, true, true), 'mt', false)
  H.tick()
  H.tick()
end

function H.run(main)
  co = coroutine.create(function()
    local ok, err = pcall(main)
    if not ok then
      H.results.error = tostring(err)
    end
    H.finish()
  end)
  local ok, err = coroutine.resume(co)
  if not ok then
    H.results.error = tostring(err)
    H.finish()
  end
end

return H
